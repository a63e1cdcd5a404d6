"""The shipped course VAE: it loads, its manifest is complete and true, and a damaged file is caught."""

import shutil

import pytest
import torch

import latentlab.pretrained as pretrained
from latentlab.baselines import bicubic_roundtrip
from latentlab.data import CHECK_PHOTOS, heldout_images, load_photo
from latentlab.errors import InputError
from latentlab.images import psnr
from latentlab.pretrained import WEIGHTS_DIR, course_manifest, load_course_vae, sha256_file, training_stages


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
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    return tmp_path


def test_a_corrupt_weights_file_is_reported(weights_copy):
    path = weights_copy / "vae.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt.*latentlab train vae"):
        load_course_vae("cpu")


def test_missing_weights_are_reported(weights_copy):
    (weights_copy / "vae.safetensors").unlink()
    with pytest.raises(InputError, match="missing"):
        load_course_vae("cpu")


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
