"""The wallpaper photographs the course VAE's decoder trains on (latentlab.wallpapers): found where Debian installs
them, drawn in a fixed order, recorded in the manifest, and refused in one sentence when missing."""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentlab import wallpapers
from latentlab.cli import main
from latentlab.data import TRAIN_PHOTOS, load_photo
from latentlab.errors import InputError
from latentlab.images import load_image
from latentlab.sources import FolderCrops, colour_mix

TINY_RUN = ["--steps", "2", "--batch-size", "2", "--crop", "16", "--eval-every", "2", "--eval-size", "32",
            "--block-out-channels", "8,8,8,8", "--norm-num-groups", "4", "--threads", "1"]


def _fake_wallpapers(root, skip=()):
    """the 25 file names under root, each a 40x24 JPEG of one flat colour (the i-th in PHOTOS: red = 10 * i)"""
    for i, (name, _, _) in enumerate(wallpapers.PHOTOS):
        if name in skip:
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 24), (10 * i, 128, 60)).save(root / name, quality=95)
    return root


def _green_share(x: torch.Tensor) -> float:
    """share of the pixels whose green is above both red and blue by more than 0.1 (13/255)"""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return ((g > r + 0.1) & (g > b + 0.1)).float().mean().item()


def test_a_missing_photo_is_named_in_one_sentence_with_the_packages_to_install(tmp_path):
    root = _fake_wallpapers(tmp_path, skip={"mate/nature/Storm.jpg"})
    with pytest.raises(InputError) as err:
        wallpapers.files(root)
    message = str(err.value)
    assert "\n" not in message and message.startswith("1 of the 25 wallpaper photographs are missing")
    assert str(root / "mate/nature/Storm.jpg") in message and "--wallpapers 0" in message
    assert all(package in message for package in wallpapers.PACKAGES) and "tools/debian_photos.py --install" in message
    (root / "mate/nature/Storm.jpg").write_bytes((root / "mate/nature/Wood.jpg").read_bytes())
    assert [p.relative_to(root).as_posix() for p in wallpapers.files(root)] == [n for n, _, _ in wallpapers.PHOTOS]


def test_the_list_is_in_file_name_order_and_names_an_author_and_licence_for_each():
    names = [name.rsplit("/", 1)[-1] for name, _, _ in wallpapers.PHOTOS]
    assert names == sorted(names) and len(set(names)) == len(names) == 25  # the order the crops draw them in
    assert all(author and licence in {"GPL-2+", "CC-BY-4.0", "CC-BY-SA-4.0", "CC0-1.0"}
               for _, author, licence in wallpapers.PHOTOS)


def test_the_mix_crops_the_wallpapers_in_order_and_looks_for_them_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(wallpapers, "ROOT", _fake_wallpapers(tmp_path / "backgrounds"))
    mix = colour_mix(size=16, length=40, seed=0, photos=0.5, augmented=0, leaves=0, foliage=0.25, wallpapers=0.25)
    assert mix.names == ["photos", "wallpapers", "foliage"]  # between the fine leaves and the foliage
    crops = mix.sources[1]
    assert isinstance(crops, FolderCrops) and [p.name for p in crops.files] == sorted(p.name for p in crops.files)
    reds = {round(float(crops[i][0].mean() + 1) * 127.5 / 10) for i in range(60)}  # each crop: one photo's colour
    assert len(reds) > 10 and reds <= set(range(25))
    shutil.rmtree(tmp_path / "backgrounds")
    assert colour_mix(size=16, length=40, seed=0, wallpapers=0).names == ["photos", "augmented", "leaves"]
    with pytest.raises(InputError, match="25 of the 25 wallpaper photographs are missing"):
        colour_mix(size=16, length=40, seed=0, wallpapers=0.2)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # as on macOS: missing and no apt to install them
    assert "no apt-get here" in wallpapers.unavailable() and "--wallpapers 0" in wallpapers.unavailable()


def test_train_vae_records_the_wallpapers_and_refuses_in_one_sentence_without_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(wallpapers, "ROOT", _fake_wallpapers(tmp_path / "backgrounds"))
    out = tmp_path / "wall.safetensors"
    assert main(["train", "vae", *TINY_RUN, "--wallpapers", "0.3", "--out", str(out)]) == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert "--wallpapers 0.3" in manifest["command"]
    assert "colour_mix(photos=0.7, augmented=0, leaves=0, wallpapers=0.3) of " in manifest["data"]
    assert "30% crops of the 25 wallpaper photographs of Debian's mate-backgrounds and lomiri-wallpapers-16.04" \
        in manifest["data"]
    shutil.rmtree(tmp_path / "backgrounds")
    capsys.readouterr()
    refused = tmp_path / "out" / "x.safetensors"
    assert main(["train", "vae", *TINY_RUN, "--wallpapers", "0.3", "--out", str(refused)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wallpaper photographs are missing" in err
    assert not refused.parent.exists()  # refused before anything was written


def test_the_installed_wallpapers_hold_the_green_the_training_photos_lack():
    """what they add, measured: the share of clearly green pixels (make test installs them first)"""
    if why := wallpapers.unavailable():
        pytest.skip(why)
    photos = [load_image(path, max_side=512) for path in wallpapers.files()]
    assert all(min(p.shape[-2:]) >= 256 and p.shape[1] == 3 for p in photos)
    assert not any(np.allclose(p[0, 0], p[0, 1]) for p in photos)  # colour photographs, not greyscale
    pixels = sum(p[0, 0].numel() for p in photos)
    wall = sum(_green_share(p) * p[0, 0].numel() for p in photos) / pixels
    train = max(_green_share(load_photo(name, 256)) for name in TRAIN_PHOTOS)
    assert wall > 0.15 and train < 0.01  # measured: 18% of the wallpapers' pixels, none of any training photo's


def test_a_recipe_that_needs_the_wallpapers_stops_before_any_stage_runs_when_they_are_missing(tmp_path, monkeypatch,
                                                                                              vae_recipe_refusal):
    """make weights would otherwise train eight stages for hours and fail at the ninth"""
    monkeypatch.setattr(wallpapers, "ROOT", tmp_path / "nothing here")
    err = vae_recipe_refusal()
    assert "recipes/vae.toml stage 'vae_run9' crops Debian's wallpaper photos" in err
    assert "tools/debian_photos.py --install" in err


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"latentlab_tools_{name}", Path(__file__).parents[1] / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("root", [True, False])
def test_the_install_step_runs_apt_get_only_where_it_may_and_else_says_the_command(monkeypatch, capsys, root):
    """tools/debian_photos.py --install, photos missing: as root it runs apt-get; a user without password-less sudo
    gets the command to run and exit 1, and apt-get is never started (no password prompt inside `make test`)"""
    tool, apt_get = _tool("debian_photos"), _tool("apt_get")
    ran = []

    def run(cmd, **kwargs):
        ran.append(cmd)
        return subprocess.CompletedProcess(cmd, 1 if cmd[:2] == ["sudo", "-n"] else 0)

    monkeypatch.setattr(apt_get.os, "geteuid", lambda: 0 if root else 1000)
    monkeypatch.setattr(apt_get.subprocess, "run", run)
    monkeypatch.setattr(tool, "apt_install", apt_get.apt_install)
    monkeypatch.setattr(tool.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(wallpapers, "missing", lambda: "the wallpaper photos are missing")
    assert tool.install() == 1  # as root: apt-get "ran" (faked) but the photos are still missing, which it says
    said = capsys.readouterr()
    if root:
        assert [cmd[0] for cmd in ran] == ["apt-get", "apt-get"] and ran[1][-3:] == tool.PACKAGES
        assert "apt-get finished but the wallpaper photos are missing" in said.err
    else:
        assert ran == [["sudo", "-n", "true"]]
        assert f"run 'sudo apt-get install -y {' '.join(tool.PACKAGES)}'" in said.err
