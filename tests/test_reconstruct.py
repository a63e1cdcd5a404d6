"""`latentlab reconstruct`: in-process and as a real subprocess, on generated PNGs; bad input exits 2 with one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentlab.cli import main
from latentlab.errors import InputError
from latentlab.reconstruct import crop_to_multiple, latent_picture

ROOT = Path(__file__).resolve().parents[1]


def _photo_like(height: int, width: int, mode: str = "RGB") -> Image.Image:
    """smooth colour gradients with a few edges: an image a VAE can reconstruct well"""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    rgb = np.stack([0.5 + 0.4 * np.sin(6 * x), 0.5 + 0.4 * np.cos(5 * y), 0.3 + 0.5 * x * y], axis=-1)
    rgb[height // 3 : height // 2, width // 4 : width // 2] = [0.9, 0.2, 0.1]  # a red block
    img = Image.fromarray((rgb * 255).round().astype(np.uint8))
    return img.convert(mode)


def test_json_output_and_files(tmp_path, capsys):
    path = tmp_path / "photo.png"
    _photo_like(70, 101).save(path)
    assert main(["reconstruct", str(path), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["latent_shape"] == [1, 4, 8, 12]  # 70x101 cropped to 64x96
    assert summary["size"] == [64, 96] and summary["input_size"] == [70, 101]
    assert summary["compression"] == 48.0
    assert "center-cropped 70x101 to 64x96" in summary["changes"][0]
    # the reconstruction resembles the photo: clearly better than painting it in its mean colour
    x = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 127.5 - 1)[3:67, 2:98]  # the centre crop reconstruct takes
    flat_psnr = 10 * np.log10(4 / (x - x.mean((0, 1))).pow(2).mean().item())
    assert flat_psnr + 3 < summary["psnr"] < 60
    recon = Image.open(summary["reconstruction"])
    assert Path(summary["reconstruction"]) == tmp_path / "photo_recon.png" and recon.size == (96, 64)
    latent = Image.open(summary["latent_image"])
    assert latent.mode == "L" and latent.size[0] > 3 * latent.size[1]  # four channel tiles side by side


def test_reported_psnr_matches_the_written_file(tmp_path, capsys):
    path, out = tmp_path / "in.png", tmp_path / "sub" / "out.png"
    out.parent.mkdir()
    _photo_like(64, 64).save(path)
    assert main(["reconstruct", str(path), "--out", str(out), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    original = np.asarray(Image.open(path), dtype=np.float64) / 127.5 - 1
    recon = np.asarray(Image.open(out), dtype=np.float64) / 127.5 - 1
    assert summary["changes"] == []
    assert 10 * np.log10(4 / np.mean((original - recon) ** 2)) == pytest.approx(summary["psnr"], abs=0.1)
    assert (tmp_path / "sub" / "out_latent.png").exists()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_rgba_and_palette_images_work(tmp_path, mode, capsys):
    path = tmp_path / f"img_{mode}.png"
    _photo_like(48, 40, mode).save(path)
    assert main(["reconstruct", str(path), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["latent_shape"] == [1, 4, 6, 5]
    assert Image.open(summary["reconstruction"]).mode == "RGB"


def test_large_images_are_shrunk_first(tmp_path, capsys):
    path = tmp_path / "big.png"
    _photo_like(300, 200).save(path)
    assert main(["reconstruct", str(path), "--max-side", "128", "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["changes"][0] == "resized 300x200 to 128x85 (--max-side 128)"
    assert summary["size"] == [128, 80]


def test_human_output(tmp_path, capsys):
    path = tmp_path / "p.png"
    _photo_like(64, 64).save(path)
    assert main(["reconstruct", str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "latent (1, 4, 8, 8) (48x fewer)" in out and "PSNR" in out and "wrote" in out


@pytest.mark.parametrize("name,content", [("missing.png", None), ("notes.png", b"not an image at all")])
def test_bad_files_exit_2_with_one_sentence(tmp_path, capsys, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["reconstruct", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("latentlab reconstruct: ") and "\n" not in err
    assert ("no image file" in err) if content is None else ("cannot read" in err)


def test_tiny_image_is_refused(tmp_path, capsys):
    path = tmp_path / "tiny.png"
    _photo_like(5, 40).save(path)
    assert main(["reconstruct", str(path)]) == 2
    assert "at least 8 pixels" in capsys.readouterr().err


def test_subprocess_python_m_latentlab(tmp_path):
    path = tmp_path / "photo.png"
    _photo_like(64, 72).save(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LATENTLAB_DEVICE": "cpu"}
    done = subprocess.run([sys.executable, "-m", "latentlab", "reconstruct", str(path), "--json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["latent_shape"] == [1, 4, 8, 9] and Path(summary["reconstruction"]).exists()

    done = subprocess.run([sys.executable, "-m", "latentlab", "reconstruct", str(tmp_path / "nope.jpg")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no image file" in done.stderr and not done.stdout


def test_crop_to_multiple_and_latent_picture_helpers():
    x = torch.zeros(1, 3, 17, 24)
    y, note = crop_to_multiple(x, 8)
    assert y.shape == (1, 3, 16, 24) and note == "center-cropped 17x24 to 16x24 (a multiple of 8)"
    assert crop_to_multiple(y, 8) == (y, None)
    with pytest.raises(InputError, match="at least 8"):
        crop_to_multiple(torch.zeros(1, 3, 7, 64), 8)
    z = torch.randn(1, 4, 8, 16, generator=torch.Generator("cpu").manual_seed(0))
    picture = latent_picture(z, tile=64)
    assert picture.size == (4 * 64 + 3 * 4, 32)  # 16 wide x4 scale per tile, 4 px gaps
