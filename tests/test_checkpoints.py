"""latentlab.checkpoints: safetensors files written whole or not at all, manifests (one schema, mode 0644), the
shipped models that load and whose manifests are true, and damaged or misnamed weights caught in one sentence."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import latentlab.checkpoints as checkpoints
from latentlab.baselines import bicubic_roundtrip
from latentlab.checkpoints import (
    MANIFEST_KEYS,
    WEIGHTS_DIR,
    course_manifest,
    load_checkpoint,
    load_course_denoiser,
    load_course_vae,
    load_denoiser_vae,
    read_checkpoint,
    save_checkpoint,
    sha256_file,
    training_stages,
    write_manifest,
)
from latentlab.data import CHECK_PHOTOS, heldout_images, load_photo
from latentlab.errors import InputError
from latentlab.images import psnr
from latentlab.vae import VAE, VAEConfig

TINY = VAEConfig(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)


def _vae(seed=0):
    torch.manual_seed(seed)
    return VAE(TINY)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---- checkpoint and manifest files

def test_save_and_load_round_trip_with_metadata(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _vae(0), {"step": 7, "note": "hello", "config": {"a": 1}})
    other = _vae(1)
    metadata = load_checkpoint(path, other)
    assert _same_weights(other, _vae(0))
    assert metadata == {"step": "7", "note": "hello", "config": '{"a": 1}'}
    assert os.stat(path).st_mode & 0o044 == 0o044  # readable by others, like any file we ship
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_a_failure_mid_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, _vae(0))
    before = path.read_bytes()

    def half_write_then_fail(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 100)  # a truncated file, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoints, "save_file", half_write_then_fail)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, _vae(1))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    model = _vae(1)
    load_checkpoint(path, model)
    assert _same_weights(model, _vae(0))


def test_load_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.safetensors", _vae())

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(64))
    with pytest.raises(InputError, match="corrupt"):
        load_checkpoint(garbage, _vae())

    good = save_checkpoint(tmp_path / "good.safetensors", _vae())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="corrupt"):
        load_checkpoint(truncated, _vae())

    bigger = VAE(VAEConfig(block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4))
    with pytest.raises(InputError, match=r"keys \d+ missing \(e\.g\. decoder\.up_blocks\.1\.upsamplers"):
        load_checkpoint(good, bigger)
    wider = VAE(VAEConfig(block_out_channels=(8, 32), layers_per_block=1, norm_num_groups=4))
    with pytest.raises(InputError, match="another shape"):
        load_checkpoint(good, wider)


def test_read_checkpoint_returns_tensors_and_metadata(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _vae(), {"step": 3})
    tensors, metadata = read_checkpoint(path)
    assert metadata == {"step": "3"} and set(tensors) == set(load_file(path))


def test_write_manifest_is_atomic_and_readable_by_all(tmp_path, monkeypatch):
    path = write_manifest(tmp_path / "m.json", {"name": "m", "steps": 3})
    assert json.loads(path.read_text()) == {"name": "m", "steps": 3}
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600

    def fail(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoints.os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        write_manifest(path, {"name": "other"})
    assert json.loads(path.read_text())["name"] == "m"  # the old manifest, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_loading_weights_does_not_import_training():
    code = "import sys, latentlab.checkpoints as c; c.load_course_vae('cpu'); print('latentlab.train' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


# ---- the shipped models



def test_course_vae_loads_in_eval_mode_with_sd_latent_geometry():
    vae = load_course_vae("cpu")
    assert not vae.training
    assert vae.factor == 8 and vae.config.latent_channels == 4
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 3, 64, 48)).mode()
    assert z.shape == (1, 4, 8, 6)


def test_manifest_says_how_the_weights_were_made():
    manifest = course_manifest("vae")
    for key in ("command", "seed", "data", "steps", "wall_time_s", "device", "config", "sha256", "heldout"):
        assert key in manifest, key
    assert manifest["command"].startswith("latentlab train vae ")
    assert "--out latentlab/weights/vae.safetensors" in manifest["command"]
    assert manifest["sha256"] == sha256_file(WEIGHTS_DIR / "vae.safetensors")
    assert (WEIGHTS_DIR / "vae.safetensors").stat().st_size < 8 * 2**20  # a few MB
    # a run cut short ships only with a note that says so (the shipped VAE is such a checkpoint)
    assert manifest["steps_done"] == manifest["steps"] or (manifest["interrupted"] and manifest["note"])


def test_manifest_metrics_and_verdict_are_true():
    """the recorded PSNRs are recomputed; the recorded verdict on the +2 dB target must match them (met or not)"""
    held = course_manifest("vae")["heldout"]
    images = heldout_images(held["size"])
    with torch.no_grad():
        vae_psnr = psnr(load_course_vae("cpu")(images).clamp(-1, 1), images)
    bicubic_psnr = psnr(bicubic_roundtrip(images, held["values_kept"]), images)
    assert vae_psnr.tolist() == pytest.approx(held["psnr_db"]["vae"], abs=0.02)
    assert bicubic_psnr.tolist() == pytest.approx(held["psnr_db"]["bicubic"], abs=0.02)
    mean = held["mean_psnr_db"]
    met = mean["vae"] >= mean["bicubic"] + 2.0 and mean["vae"] > mean["pca"]
    assert held["target_met"] is met


def test_manifest_untouched_photo_numbers_are_true():
    """the independent check (greyscale photos no run trained on or was chosen by) is recorded truthfully"""
    check = course_manifest("vae")["heldout"]["untouched"]
    assert tuple(check["images"]) == CHECK_PHOTOS
    photos = torch.cat([load_photo(name, check["size"]) for name in check["images"]])
    with torch.no_grad():
        vae_psnr = psnr(load_course_vae("cpu")(photos).clamp(-1, 1), photos)
    keep = course_manifest("vae")["heldout"]["values_kept"]
    assert vae_psnr.tolist() == pytest.approx(check["psnr_db"]["vae"], abs=0.02)
    assert psnr(bicubic_roundtrip(photos, keep), photos).tolist() == pytest.approx(check["psnr_db"]["bicubic"], abs=0.02)


@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    for suffix in (".safetensors", ".json"):
        shutil.copy(WEIGHTS_DIR / f"vae{suffix}", tmp_path / f"vae{suffix}")
    monkeypatch.setattr(checkpoints, "WEIGHTS_DIR", tmp_path)
    return tmp_path


def test_a_corrupt_weights_file_is_reported(weights_copy):
    path = weights_copy / "vae.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        load_course_vae("cpu")
    message = str(info.value)
    assert "corrupt" in message and "`make weights`" in message and "reinstall latentlab" in message
    remedy = message.split("; ", 1)[1]
    assert "/tmp" not in remedy and "latentlab train" not in remedy  # not one stage of a chain, nor a temp path
    assert checkpoints.verify() == {"vae": message}  # what `latentlab doctor` reports


def test_missing_weights_are_reported(weights_copy):
    (weights_copy / "vae.safetensors").unlink()
    with pytest.raises(InputError, match="missing.*`make weights`"):
        load_course_vae("cpu")
    assert "missing" in checkpoints.verify()["vae"]


def test_unknown_model_name_lists_what_ships():
    with pytest.raises(InputError, match="shipped: .*vae"):
        course_manifest("no_such_model")


def test_training_stages_read_the_chain_of_runs_first_to_last():
    manifest = {"command": "c", "steps_done": 3, "wall_time_s": 3.0,
                "base": {"command": "b", "steps_done": 2, "wall_time_s": 2.0,
                         "base": {"command": "a", "steps_done": 1, "wall_time_s": 1.0, "device": "cpu"}}}
    stages = training_stages(manifest)
    assert [s["command"] for s in stages] == ["a", "b", "c"] and stages[0]["device"] == "cpu"
    assert [s["command"] for s in training_stages(course_manifest("vae"))][-1] == course_manifest("vae")["command"]
    assert stages[0]["sha256"] is None  # a record without one


def test_the_shipped_chain_names_the_run_each_adapted_vae_started_from():
    """lesson 08 reads which run of the course VAE the denoiser's VAE was adapted from"""
    stages = training_stages(course_manifest("vae"))
    assert all(s["sha256"] for s in stages) and len({s["sha256"] for s in stages}) == len(stages)
    assert stages[-1]["sha256"] == course_manifest("vae")["sha256"]
    base = course_manifest("denoiser_vae")["base_vae_sha256"]
    assert [s["name"] for s in stages if s["sha256"] == base] == ["run 5"]


def test_training_stages_name_the_chain_by_runs_not_by_the_training_machines_files():
    manifest = {"command": "latentlab train vae --steps 3 --init /tmp/x/R2.safetensors --out latentlab/weights/vae.safetensors",
                "device": "cpu (1 threads)",
                "base": {"command": "latentlab train vae --steps 2 --out /tmp/x/R2.safetensors", "device": "cpu (2 threads)"}}
    first, second = training_stages(manifest)
    assert [first["name"], second["name"]] == ["run 1", "run 2"]
    assert first["settings"] == "latentlab train vae --steps 2"
    assert second["settings"] == "latentlab train vae --steps 3 --init <the weights of run 1>"
    assert second["command"] == manifest["command"]  # the record itself is kept as it was
    assert (first["device"], second["device"]) == ("cpu (2 threads)", "cpu (1 thread)")
    for stage in training_stages(course_manifest("vae")):
        assert "/tmp" not in stage["settings"] and "/work" not in stage["settings"] and "1 threads" not in stage["device"]


def test_every_shipped_manifest_follows_the_one_schema():
    names = checkpoints.shipped()
    assert {"vae", "denoiser_vae", "denoiser", "denoiser_pixel"} <= set(names)
    for name in names:
        manifest = course_manifest(name)
        assert [k for k in MANIFEST_KEYS if k not in manifest] == [], name
        assert manifest["name"] == name and manifest["sha256"] == sha256_file(WEIGHTS_DIR / f"{name}.safetensors")
        if "space" in manifest:  # a denoiser names the VAE whose latents it learned, or none in pixel space
            assert manifest["vae"] in (None, *names), name
    assert all(problem is None for problem in checkpoints.verify().values())


# ---- a wrong name gets one sentence, not a traceback and not a wrong sentence (issue 14's probes)

def _one_sentence(message: str) -> None:
    assert message.endswith(".") and "\n" not in message and "Traceback" not in message


def test_a_vae_name_given_to_the_denoiser_loader_says_what_to_do():
    with pytest.raises(InputError) as info:
        load_course_denoiser("vae")
    _one_sentence(str(info.value))
    assert "'vae' is not a denoiser" in str(info.value) and "denoiser_pixel" in str(info.value)
    assert "load_course_vae()" in str(info.value)


def test_the_denoiser_vae_loader_tells_a_vae_from_a_pixel_denoiser():
    with pytest.raises(InputError) as info:
        load_denoiser_vae("vae")
    message = str(info.value)
    _one_sentence(message)
    assert "'vae' is not a denoiser" in message and "pixel-space" not in message and "(denoiser)" in message
    with pytest.raises(InputError, match="denoiser_pixel is a pixel-space denoiser and has no VAE"):
        load_denoiser_vae("denoiser_pixel")
    with pytest.raises(InputError, match="no shipped model named 'nope'; shipped: denoiser, "):
        load_denoiser_vae("nope")
