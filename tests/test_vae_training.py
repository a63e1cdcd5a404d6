"""latentlab.vae_training: the job behind `latentlab train vae` (weights, manifest, continuing from a checkpoint,
refusing bad options in one line) and its colour augmentation."""

import json

import pytest
import torch

from latentlab.checkpoints import load_checkpoint, save_checkpoint, sha256_file
from latentlab.cli import main
from latentlab.vae import VAE, VAEConfig
from latentlab.vae_training import shuffle_rgb

TINY = VAEConfig(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)


def _vae(seed=0):
    torch.manual_seed(seed)
    return VAE(TINY)


def _images(b=4, size=16, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator("cpu").manual_seed(seed)) * 2 - 1


def test_shuffle_rgb_permutes_each_images_channels():
    x = _images(b=32)
    y = shuffle_rgb(x, torch.Generator("cpu").manual_seed(0))
    assert torch.equal(y.sort(dim=1).values, x.sort(dim=1).values)  # the same three values at every pixel
    orders = {tuple(int((y[i] == x[i, c]).all(dim=(1, 2)).nonzero()) for c in range(3)) for i in range(32)}
    assert len(orders) > 3  # several of the 6 orders occur in 32 images
    assert torch.equal(y, shuffle_rgb(x, torch.Generator("cpu").manual_seed(0)))


def test_train_vae_command_writes_weights_and_manifest(tmp_path, capsys):
    out = tmp_path / "tiny.safetensors"
    code = main(["train", "vae", "--steps", "2", "--batch-size", "2", "--crop", "16", "--block-out-channels", "8,16",
                 "--norm-num-groups", "4", "--eval-every", "2", "--threads", "1", "--device", "cpu", "--out", str(out)])
    assert code == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["sha256"] == sha256_file(out)
    assert out.with_suffix(".json").stat().st_mode & 0o777 == 0o644  # readable like any file, not 0600
    assert manifest["steps_done"] == 2 and manifest["seed"] == 0 and manifest["wall_time_s"] > 0
    assert manifest["command"].startswith("latentlab train vae --steps 2 --batch-size 2 --crop 16")
    assert "heldout_psnr" in manifest["final"]
    vae = VAE(VAEConfig(**manifest["config"]))
    load_checkpoint(out, vae)
    assert vae.config.scaling_factor > 0 and vae.config.block_out_channels == (8, 16)


def test_train_vae_command_continues_from_a_checkpoint(tmp_path):
    first = tmp_path / "first.safetensors"
    assert main(["train", "vae", "--steps", "2", "--batch-size", "2", "--crop", "16", "--block-out-channels", "8,16",
                 "--norm-num-groups", "4", "--eval-every", "2", "--threads", "1", "--device", "cpu",
                 "--out", str(first)]) == 0
    second = tmp_path / "second.safetensors"
    assert main(["train", "vae", "--init", str(first), "--steps", "3", "--batch-size", "1", "--crop", "32",
                 "--average", "0.9", "--seed", "1", "--eval-every", "3", "--threads", "1", "--device", "cpu",
                 "--out", str(second)]) == 0
    manifest = json.loads(second.with_suffix(".json").read_text())
    first_manifest = json.loads(first.with_suffix(".json").read_text())
    assert manifest["config"]["block_out_channels"] == [8, 16]  # the architecture comes from the checkpoint
    assert f"--init {first}" in manifest["command"] and "--average 0.9" in manifest["command"]
    assert "--block-out-channels" not in manifest["command"]
    base = manifest["base"]
    assert base["sha256"] == first_manifest["sha256"] and base["command"] == first_manifest["command"]
    assert base["steps_done"] == 2 and base["heldout_psnr_history"][-1][0] == 2
    vae = VAE(VAEConfig(**manifest["config"]))
    load_checkpoint(second, vae)


def test_train_vae_command_checks_the_crop_against_the_checkpoints_factor(tmp_path, capsys):
    first = tmp_path / "first.safetensors"  # factor 16: five resolutions (the command-line default is factor 8)
    assert main(["train", "vae", "--steps", "1", "--batch-size", "1", "--crop", "16", "--block-out-channels",
                 "8,8,8,8,8", "--norm-num-groups", "4", "--eval-every", "1", "--threads", "1", "--device", "cpu",
                 "--out", str(first)]) == 0
    capsys.readouterr()
    assert main(["train", "vae", "--init", str(first), "--crop", "24", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "multiple of the VAE factor 16" in capsys.readouterr().err


def test_train_vae_command_rejects_a_checkpoint_without_a_config(tmp_path, capsys):
    bare = tmp_path / "bare.safetensors"
    save_checkpoint(bare, _vae())
    assert main(["train", "vae", "--init", str(bare), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "holds no VAE config" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "args,words",
    [
        (["--average", "1.5"], "--average must be a decay strictly between 0 and 1 (e.g. 0.999), not 1.5."),
        (["--block-out-channels", "8,x"], "integers joined by commas"),
        (["--crop-scale", "0.5"], "two fractions"),
        (["--steps", "0"], "--steps must be an integer >= 1, not 0."),
    ],
)
def test_train_vae_command_rejects_bad_options(args, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit:  # argparse refuses the flag itself, before anything runs
        main(["train", "vae", "--out", str(tmp_path / "x.safetensors"), *args])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and words in err and err.count("\n") == 1


def test_train_vae_command_checks_the_crop_against_the_vae_factor(capsys, tmp_path):
    assert main(["train", "vae", "--crop", "20", "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "crop 20 must be a multiple of the VAE factor 8" in err and err.count("\n") == 1
