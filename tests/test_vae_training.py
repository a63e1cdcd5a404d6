"""latentlab.vae_training: the job behind `latentlab train vae` (weights, manifest, continuing from a checkpoint,
refusing bad options in one line) and its colour augmentation."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from latentlab.checkpoints import load_checkpoint, save_checkpoint, sha256_file
from latentlab.cli import main
from latentlab.data import PhotoCrops
from latentlab.errors import InputError
from latentlab.evaluate import load_vae
from latentlab.sources import FolderCrops
from latentlab.vae import VAE, VAEConfig
from latentlab.vae_training import VAETraining, deepened_from, plain_crops, shuffle_rgb, training_data

TINY_RUN = ["--steps", "2", "--batch-size", "2", "--crop", "16", "--block-out-channels", "8,16", "--norm-num-groups",
            "4", "--eval-every", "2", "--eval-size", "32", "--threads", "1", "--device", "cpu"]
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
                 "--norm-num-groups", "4", "--eval-every", "2", "--eval-size", "32", "--threads", "1", "--device", "cpu",
                 "--out", str(out)])
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
                 "--norm-num-groups", "4", "--eval-every", "2", "--eval-size", "32", "--threads", "1", "--device", "cpu",
                 "--out", str(first)]) == 0
    second = tmp_path / "second.safetensors"
    assert main(["train", "vae", "--init", str(first), "--steps", "3", "--batch-size", "1", "--crop", "32",
                 "--average", "0.9", "--seed", "1", "--eval-every", "3", "--eval-size", "32", "--threads", "1", "--device", "cpu",
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
                 "8,8,8,8,8", "--norm-num-groups", "4", "--eval-every", "1", "--eval-size", "32", "--threads", "1", "--device", "cpu",
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


def _flat_pngs(folder, colour=(0, 255, 0), n=2, size=(40, 48)):
    """n flat images of one colour (pure green by default) as PNG files"""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((*size, 3), colour, dtype=np.uint8)).save(folder / f"flat{i}.png")
    return folder


def test_training_data_is_the_shipped_runs_crops_unless_a_mix_or_a_folder_is_asked_for(tmp_path):
    plain = training_data(VAETraining(steps=4, batch_size=2, crop=16, seed=3))
    reference = PhotoCrops(16, "train", 8, 3, (0.06, 0.3))
    assert all(torch.equal(plain[i], reference[i]) for i in range(8))  # item for item, as before the mix existed
    mix = training_data(VAETraining(steps=4, batch_size=2, crop=16, augment=0.3, dead_leaves=0.3))
    assert mix.names == ["photos", "augmented", "leaves"]
    assert torch.allclose(mix.probabilities, torch.tensor([0.4, 0.3, 0.3], dtype=torch.float64))
    assert isinstance(plain_crops(mix), PhotoCrops)  # the scaling factor is measured on these, not on the leaves
    leaves = training_data(VAETraining(steps=4, batch_size=2, crop=16, dead_leaves=1.0))
    assert leaves.names == ["leaves"] and plain_crops(leaves) is None
    textured = training_data(VAETraining(steps=4, batch_size=2, crop=16, augment=0.2, fine_leaves=0.3, flat_patches=0.1))
    assert textured.names == ["photos", "augmented", "patches", "fine"]
    assert torch.allclose(textured.probabilities, torch.tensor([0.4, 0.2, 0.1, 0.3], dtype=torch.float64))
    assert VAETraining(fine_leaves=0.1).mixed() and not VAETraining().mixed()
    foliage = training_data(VAETraining(steps=4, batch_size=2, crop=16, foliage=0.5))
    assert foliage.names == ["photos", "foliage"] and VAETraining(foliage=0.1).mixed()

    green = _flat_pngs(tmp_path / "green")
    folder = training_data(VAETraining(steps=4, batch_size=2, crop=16, data=str(green)))
    assert isinstance(folder, FolderCrops)
    items = torch.stack([folder[i] for i in range(8)])
    assert torch.allclose(items, torch.tensor([-1.0, 1.0, -1.0])[None, :, None, None].expand_as(items), atol=0.02)
    turned = training_data(VAETraining(steps=8, batch_size=2, crop=16, data=str(green), augment=1.0))
    means = torch.stack([turned[i].mean((1, 2)) for i in range(16)])  # each augmented crop's colour
    assert (means - torch.tensor([-1.0, 1.0, -1.0])).abs().amax(1).gt(0.3).sum() >= 8  # most are green no longer


def test_train_vae_command_trains_on_the_colour_mix(tmp_path):
    out = tmp_path / "mix.safetensors"
    assert main(["train", "vae", *TINY_RUN, "--augment", "0.3", "--dead-leaves", "0.3", "--out", str(out)]) == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert "--augment 0.3 --dead-leaves 0.3" in manifest["command"]
    assert manifest["data"].startswith("latentlab.sources.colour_mix(photos=0.4, augmented=0.3, leaves=0.3) of "
                                       "latentlab.data.PhotoCrops(16, 'train'")
    assert "30% dead leaves" in manifest["data"]
    final = manifest["final"]  # the ColorChecker is watched beside the held-out photos
    assert "heldout_psnr" in final and 0 <= final["chart_mean"] <= final["chart_worst"] <= 255
    assert "fine" not in manifest["data"]  # the shipped runs' manifests read as they did before fine leaves existed
    fine = tmp_path / "fine.safetensors"
    assert main(["train", "vae", *TINY_RUN, "--fine-leaves", "0.5", "--flat-patches", "0.2", "--out", str(fine)]) == 0
    data = json.loads(fine.with_suffix(".json").read_text())["data"]
    assert data.startswith("latentlab.sources.colour_mix(photos=0.3, augmented=0, leaves=0, patches=0.2, fine=0.5) of ")
    assert "50% fine-textured dead leaves, 20% flat colour patches" in data
    grass = tmp_path / "grass.safetensors"
    assert main(["train", "vae", *TINY_RUN, "--foliage", "0.4", "--out", str(grass)]) == 0
    data = json.loads(grass.with_suffix(".json").read_text())["data"]
    assert "colour_mix(photos=0.6, augmented=0, leaves=0, foliage=0.4) of " in data and "40% foliage" in data
    plain = tmp_path / "plain.safetensors"
    assert main(["train", "vae", *TINY_RUN, "--out", str(plain)]) == 0
    data = json.loads(plain.with_suffix(".json").read_text())["data"]
    assert data.startswith("latentlab.data.PhotoCrops(16, 'train', seed=0") and "colour_mix" not in data


def test_train_vae_command_trains_on_a_folder_of_your_own_images(tmp_path):
    folder = _flat_pngs(tmp_path / "mine", colour=(20, 200, 180), n=3)
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "mine.safetensors"
    assert main(["train", "vae", *TINY_RUN, "--data", str(folder), "--dead-leaves", "0.5", "--out", str(out)]) == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert f"--data {folder}" in manifest["command"]
    assert f"FolderCrops({str(folder)!r}, size=16" in manifest["data"]
    assert f"3 images from {folder}; skipped 1 unreadable file(s), e.g. broken.png" in manifest["data"]


@pytest.mark.parametrize("contents", [{}, {"a.png": b"garbage", "b.jpg": b"also garbage"}], ids=["empty", "unreadable"])
def test_train_vae_command_refuses_an_empty_or_unreadable_data_folder_in_one_sentence(contents, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    out = tmp_path / "out" / "x.safetensors"
    assert main(["train", "vae", *TINY_RUN, "--data", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(folder) in err and ("no image files" in err or "could be read" in err)
    assert not out.parent.exists()  # refused before anything ran or was written


def test_the_mix_weights_must_leave_room_for_the_photos(capsys, tmp_path):
    with pytest.raises(InputError, match="augment \\+ dead_leaves \\+ fine_leaves \\+ flat_patches \\+ foliage "
                       "\\+ wallpapers \\+ gcompris is 1.1, more than 1"):
        VAETraining(augment=0.6, dead_leaves=0.5)
    with pytest.raises(InputError, match="is 1.05, more than 1"):
        VAETraining(augment=0.3, dead_leaves=0.3, fine_leaves=0.3, flat_patches=0.15)
    assert VAETraining(augment=0.5, dead_leaves=0.5).mixed()  # all augmented or leaves: allowed
    assert VAETraining(augment=0.7, fine_leaves=0.3).photos() == pytest.approx(0)  # a rounding error below 0: allowed
    assert main(["train", "vae", "--augment", "0.7", "--dead-leaves", "0.7", "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "more than 1 (the rest are plain photo crops)" in err and err.count("\n") == 1


def test_train_part_decoder_keeps_the_encoder_and_the_scaling_factor_of_init(tmp_path, capsys):
    first = tmp_path / "first.safetensors"
    assert main(["train", "vae", *TINY_RUN, "--out", str(first)]) == 0
    second = tmp_path / "second.safetensors"
    assert main(["train", "vae", "--init", str(first), "--train-part", "decoder", "--steps", "3", "--batch-size", "2",
                 "--crop", "16", "--lr", "0.01", "--eval-every", "3", "--eval-size", "32", "--threads", "1",
                 "--device", "cpu", "--out", str(second)]) == 0
    before, after = load_vae(first), load_vae(second)
    for part in ("encoder", "quant_conv"):  # frozen: bit for bit what init holds
        for (name, old), new in zip(getattr(before, part).state_dict().items(), getattr(after, part).state_dict().values()):
            assert torch.equal(old, new), f"{part}.{name} changed"
    changed = [name for (name, old), new in zip(before.decoder.state_dict().items(), after.decoder.state_dict().values())
               if not torch.equal(old, new)]
    assert changed, "the decoder should have trained"
    assert after.config.scaling_factor == before.config.scaling_factor  # the same latents, so the same spread
    assert "--train-part decoder" in json.loads(second.with_suffix(".json").read_text())["command"]


def test_train_part_decoder_without_init_says_what_to_add(capsys):
    assert main(["train", "vae", *TINY_RUN, "--train-part", "decoder", "--out", "never.safetensors"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--init" in err and len(err.splitlines()) == 1


def test_a_vae_grown_from_init_starts_with_init_s_exact_encoder_and_decoder(tmp_path):
    first = tmp_path / "first.safetensors"
    small = _vae()
    save_checkpoint(first, small)
    deep = VAE(replace(TINY, layers_per_block=3))  # two more ResBlocks per level, in the encoder and the decoder
    deepened_from(first, deep)
    x = _images()
    with torch.no_grad():
        z = small.encode(x).mean
        assert torch.equal(deep.encode(x).mean, z) and torch.equal(deep.decode(z), small.decode(z))
    for blocks in (deep.encoder.down_blocks, deep.decoder.up_blocks):
        for block in blocks:
            new = block.resnets[-2:]
            assert all(not r.conv2.weight.any() and not r.conv2.bias.any() for r in new)
            assert all(r.conv1.weight.any() for r in new)  # trainable from the first step: only the last conv is zero
    wider = VAE(replace(TINY, block_out_channels=(8, 24), layers_per_block=2))
    with pytest.raises(InputError, match="does not fit this VAE"):
        deepened_from(first, wider)


def test_train_vae_command_grows_init_when_asked_for_more_resblocks(tmp_path):
    first = tmp_path / "first.safetensors"
    assert main(["train", "vae", *TINY_RUN, "--out", str(first)]) == 0
    second = tmp_path / "second.safetensors"
    assert main(["train", "vae", "--init", str(first), "--layers-per-block", "2", "--train-part", "decoder",
                 "--steps", "2", "--batch-size", "2", "--crop", "16", "--eval-every", "2", "--eval-size", "32",
                 "--threads", "1", "--device", "cpu", "--out", str(second)]) == 0
    manifest = json.loads(second.with_suffix(".json").read_text())
    assert manifest["config"]["layers_per_block"] == 2 and manifest["training"]["layers_per_block"] == 2
    assert "--layers-per-block 2" in manifest["command"]  # the recorded command grows init as this run did
    before, after = load_vae(first), load_vae(second)
    x = _images(size=32)
    with torch.no_grad():  # the frozen encoder's new blocks stay identities: the latents are init's, bit for bit
        assert torch.equal(after.encode(x).mean, before.encode(x).mean)
        assert not torch.equal(after.decode(before.encode(x).mean), before.decode(before.encode(x).mean))
    assert main(["train", "vae", "--init", str(second), "--steps", "1", "--batch-size", "1", "--crop", "16",
                 "--eval-every", "1", "--eval-size", "32", "--threads", "1", "--device", "cpu",
                 "--out", str(tmp_path / "third.safetensors")]) == 0  # fewer ResBlocks asked than init has: init's kept
    assert json.loads((tmp_path / "third.json").read_text())["config"]["layers_per_block"] == 2
