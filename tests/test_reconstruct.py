"""`latentlab reconstruct`: in-process and as a real subprocess, on generated PNGs; bad input exits 2 with one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

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
    assert summary["size"] == [96, 64] and summary["input_size"] == [101, 70]  # width x height
    assert summary["compression"] == 48.0
    assert "center-cropped 101x70 to 96x64" in summary["changes"][0]
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
    assert summary["changes"][0] == "resized 200x300 to 85x128 (--max-side 128)"  # width x height
    assert summary["size"] == [80, 128]


def test_human_output(tmp_path, capsys):
    path = tmp_path / "p.png"
    _photo_like(64, 64).save(path)
    assert main(["reconstruct", str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "latent (1, 4, 8, 8) (48x fewer)" in out and "PSNR" in out and "wrote" in out
    assert out.startswith("reconstructing 64x64 on cpu") and " GB and " in out.splitlines()[0]  # estimated first


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
    assert y.shape == (1, 3, 16, 24) and note == "center-cropped 24x17 to 24x16 (a multiple of 8)"
    assert crop_to_multiple(y, 8) == (y, None)
    with pytest.raises(InputError, match="at least 8"):
        crop_to_multiple(torch.zeros(1, 3, 7, 64), 8)
    z = torch.randn(1, 4, 8, 16, generator=torch.Generator("cpu").manual_seed(0))
    picture = latent_picture(z, tile=64)
    assert picture.size == (4 * 64 + 3 * 4, 32)  # 16 wide x4 scale per tile, 4 px gaps


# ---- quality: relative to what bicubic keeps of the same image, and to the shipped manifest (issue 14)

SHIPPED = json.loads((ROOT / "latentlab" / "weights" / "vae.json").read_text())["heldout"]


def _quality_problems(path: Path, summary: dict, shipped_psnr: float) -> list[str]:
    """what a real regression breaks: the VAE must beat bicubic at equal number of values, and match its manifest"""
    from latentlab.baselines import bicubic_roundtrip
    from latentlab.images import load_image, psnr

    x = load_image(path)
    bicubic = psnr(bicubic_roundtrip(x), x).item()  # 4 x H/8 x W/8 values kept, as many as the latent
    problems = []
    if summary["psnr"] < bicubic + 1.5:  # the shipped VAE: +2.03 dB on this photo
        problems.append(f"{summary['psnr']:.2f} dB is not 1.5 dB above bicubic's {bicubic:.2f} dB")
    if abs(summary["psnr"] - shipped_psnr) > 0.25:
        problems.append(f"{summary['psnr']:.2f} dB differs from the manifest's {shipped_psnr:.2f} dB")
    return problems


@pytest.fixture
def heldout_cat(tmp_path) -> tuple[Path, float]:
    from latentlab.data import load_photo
    from latentlab.images import to_pil

    path = tmp_path / "chelsea.png"
    to_pil(load_photo("chelsea", SHIPPED["size"])).save(path)  # the held-out cat, as the manifest measured it
    return path, SHIPPED["psnr_db"]["vae"][SHIPPED["images"].index("chelsea")]


def test_reconstruction_beats_bicubic_and_matches_the_manifest(heldout_cat, capsys):
    path, shipped = heldout_cat
    assert main(["reconstruct", str(path), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert _quality_problems(path, summary, shipped) == []


@pytest.mark.parametrize("damage", ["colour cast", "broken decoder"])
def test_the_quality_check_fails_for_a_damaged_vae(heldout_cat, capsys, monkeypatch, damage):
    import latentlab.reconstruct

    path, shipped = heldout_cat
    load = latentlab.reconstruct.load_course_vae

    def damaged(device=None):
        vae = load(device)
        with torch.no_grad():
            if damage == "colour cast":
                vae.decoder.conv_out.bias[0] += 0.05  # red 1.25% of the range too bright: -0.5 dB
            else:
                vae.decoder.up_blocks[-1].resnets[-1].conv2.weight.zero_()  # the last 3x3 conv of the decoder
        return vae

    monkeypatch.setattr(latentlab.reconstruct, "load_course_vae", damaged)
    assert main(["reconstruct", str(path), "--json", "--device", "cpu"]) == 0
    assert _quality_problems(path, json.loads(capsys.readouterr().out), shipped) != []


# ---- files as phones and scanners write them; huge files; memory (issue 14)


def test_phone_photo_with_exif_orientation_is_reconstructed_upright(tmp_path, capsys):
    from latentlab.data import load_photo
    from latentlab.images import center_crop, resize, to_numpy

    stored = to_numpy(center_crop(resize(load_photo("chelsea"), 128), (64, 128)))[0]  # stored 128 wide x 64 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": shown 64 wide x 128 high
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    assert main(["reconstruct", str(path), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["input_size"] == [64, 128] and summary["size"] == [64, 128]
    recon = Image.open(summary["reconstruction"])
    assert recon.size == (64, 128) and not recon.getexif()  # upright pixels, nothing left for a viewer to turn
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)), dtype=np.float64)
    turned_wrong = np.rot90(upright, 2)  # the other way round
    recon = np.asarray(recon, dtype=np.float64)
    psnr_upright, psnr_wrong = (10 * np.log10(255**2 / np.mean((recon - ref) ** 2)) for ref in (upright, turned_wrong))
    assert psnr_upright > 24 and psnr_upright > psnr_wrong + 5


@pytest.mark.parametrize("kind", ["16-bit PNG", "float TIFF"])
def test_high_bit_depth_grayscale_is_not_clipped(tmp_path, capsys, kind):
    gray = np.asarray(_photo_like(64, 64, "L"), dtype=np.float64) / 255  # 0..1
    if kind == "16-bit PNG":
        path = tmp_path / "scan.png"
        Image.fromarray((gray * 65535).round().astype(np.uint16)).save(path)
    else:
        path = tmp_path / "scan.tif"
        Image.fromarray(gray.astype(np.float32)).save(path)
    assert main(["reconstruct", str(path), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    recon = np.asarray(Image.open(summary["reconstruction"]).convert("L"), dtype=np.float64) / 255
    assert abs(recon.mean() - gray.mean()) < 0.03  # once near-white (16-bit) or black (float)
    assert summary["psnr"] > 22


def test_a_12000x8000_png_is_refused_before_decoding_when_memory_is_short(tmp_path, capsys, monkeypatch):
    from test_images import _png_header

    import latentlab.images

    path = tmp_path / "pano.png"
    path.write_bytes(_png_header(12_000, 8_000))
    monkeypatch.setattr(latentlab.images, "available_memory", lambda device: 200_000_000)
    assert main(["reconstruct", str(path), "--max-side", "4000", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "12000x8000 (96 megapixels)" in err and "GB is free" in err and "\n" not in err


def test_a_200_megapixel_png_gets_one_sentence(tmp_path, capsys):
    from test_images import _png_header

    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(20_000, 10_000))
    assert main(["reconstruct", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("latentlab reconstruct: bomb.png is 20000x10000 (200 megapixels)") and "\n" not in err


def test_what_will_not_fit_is_refused_up_front_with_a_smaller_max_side(tmp_path, capsys, monkeypatch):
    import latentlab.reconstruct

    path = tmp_path / "photo.png"
    _photo_like(600, 800).save(path)
    monkeypatch.setattr(latentlab.reconstruct, "available_memory", lambda device: 100_000_000)  # 100 MB free
    monkeypatch.setattr(latentlab.reconstruct, "load_image", lambda *a, **k: pytest.fail("loaded before refusing"))
    assert main(["reconstruct", str(path), "--max-side", "4000", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "reconstructing 800x600 needs about" in err and "use a smaller --max-side, e.g." in err
    assert "\n" not in err and not (tmp_path / "photo_recon.png").exists()


def test_memory_errors_during_the_compute_become_one_sentence(tmp_path, capsys, monkeypatch):
    from latentlab.vae import VAE

    def out_of_memory(self, x):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried to "
                           "allocate 4170000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(VAE, "encode", out_of_memory)
    path = tmp_path / "photo.png"
    _photo_like(64, 64).save(path)
    assert main(["reconstruct", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "ran out of memory reconstructing 64x64" in err and "\n" not in err


def test_the_estimate_is_in_the_summary_and_sane(tmp_path, capsys):
    path = tmp_path / "photo.png"
    _photo_like(64, 64).save(path)
    assert main(["reconstruct", str(path), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert 0.001 < summary["estimate"]["memory_gb"] < 0.5 and summary["estimate"]["seconds"] > 0


@pytest.mark.parametrize("value", ["0", "-5", "7", "big"])
def test_max_side_is_range_checked_by_the_parser(tmp_path, capsys, value):
    path = tmp_path / "photo.png"
    _photo_like(64, 64).save(path)
    with pytest.raises(SystemExit) as exit_info:
        main(["reconstruct", str(path), "--max-side", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --max-side" in err and "1x1" not in err and ("at least 8" in err or "whole number" in err)
    with pytest.raises(InputError, match="max_side must be a whole number of at least 8"):
        from latentlab.reconstruct import reconstruct_file

        reconstruct_file(path, max_side=0)


# ---- outputs: checked before the compute, never overwriting silently, written whole (issue 14)


@pytest.fixture
def no_compute(monkeypatch):
    """fail the test if reconstruct gets as far as loading the model"""
    import latentlab.reconstruct

    monkeypatch.setattr(latentlab.reconstruct, "load_course_vae", lambda *a, **k: pytest.fail("computed first"))


def test_a_missing_out_folder_is_found_before_the_compute(tmp_path, capsys, no_compute):
    path = tmp_path / "photo.png"
    _photo_like(64, 64).save(path)
    assert main(["reconstruct", str(path), "--out", str(tmp_path / "nope" / "out.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"the folder {tmp_path / 'nope'} does not exist" in err and "\n" not in err


@pytest.mark.parametrize("out", ["photo.png", "./photo.png", "link.png"])
def test_out_may_not_overwrite_the_input(tmp_path, capsys, no_compute, monkeypatch, out):
    path = tmp_path / "photo.png"
    _photo_like(64, 64).save(path)
    (tmp_path / "link.png").symlink_to(path)
    before = path.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["reconstruct", "photo.png", "--out", out, "--overwrite"]) == 2  # not even with --overwrite
    assert "is the input image and would be overwritten" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_existing_outputs_are_not_overwritten_without_overwrite(tmp_path, capsys):
    path = tmp_path / "photo.png"
    _photo_like(64, 64).save(path)
    latent = tmp_path / "photo_recon_latent.png"
    latent.write_bytes(b"my notes")  # only the companion exists
    assert main(["reconstruct", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{latent} already exists; pass --overwrite" in err and "\n" not in err
    assert latent.read_bytes() == b"my notes" and not (tmp_path / "photo_recon.png").exists()
    assert main(["reconstruct", str(path), "--device", "cpu", "--overwrite"]) == 0
    assert Image.open(latent).mode == "L"


@pytest.mark.parametrize("out, words", [("result", "no extension is not an image format"),
                                        ("result.txt", ".txt is not an image format")])
def test_unknown_extensions_are_refused_before_the_compute(tmp_path, capsys, no_compute, out, words):
    path = tmp_path / "photo.png"
    _photo_like(64, 64).save(path)
    assert main(["reconstruct", str(path), "--out", str(tmp_path / out)]) == 2
    assert words in capsys.readouterr().err


def test_a_failure_on_the_second_file_leaves_nothing_and_names_that_file(tmp_path, capsys, monkeypatch):
    import latentlab.reconstruct

    class FullDisk:
        def save(self, path):
            Path(path).write_bytes(b"half a pic")
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(latentlab.reconstruct, "latent_picture", lambda z: FullDisk())
    path = tmp_path / "photo.png"
    _photo_like(64, 64).save(path)
    assert main(["reconstruct", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"cannot write {tmp_path / 'photo_recon_latent.png'} (No space left on device)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]  # no first file, no partial files


def test_a_missing_image_is_named_before_its_missing_folder(tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "no" / "photo.png")]) == 2
    assert f"no image file at {tmp_path / 'no' / 'photo.png'}" in capsys.readouterr().err
