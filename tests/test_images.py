import numpy as np
import pytest
import torch
from PIL import Image, ImageOps, PngImagePlugin

from latentlab import images
from latentlab.errors import InputError


def test_uint8_numpy_maps_0_255_to_minus1_plus1():
    a = np.array([[[0, 128, 255]]], dtype=np.uint8)  # (1, 1, 3)
    x = images.to_tensor(a)
    assert x.shape == (1, 3, 1, 1)
    assert torch.allclose(x.flatten(), torch.tensor([-1.0, 128 / 127.5 - 1, 1.0]), atol=1e-6)


def test_roundtrip_uint8_is_exact():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    assert np.array_equal(images.to_numpy(images.to_tensor(a))[0], a)


def test_pil_roundtrip_and_grayscale_repeated():
    img = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), mode="L")
    x = images.to_tensor(img)
    assert x.shape == (1, 3, 8, 8)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    assert images.to_pil(x).mode == "RGB"


def test_rgba_is_composited_on_white():
    a = np.zeros((2, 2, 4), dtype=np.uint8)
    a[0, 0] = [255, 0, 0, 255]  # opaque red; the rest fully transparent
    x = images.to_tensor(a)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    assert torch.allclose(x[0, :, 1, 1], torch.ones(3))
    pil = Image.fromarray(a, mode="RGBA")
    assert torch.allclose(images.to_tensor(pil), x)


@pytest.mark.parametrize(
    "bad, words",
    [
        (torch.full((1, 3, 4, 4), 200.0), "0..255"),
        (torch.zeros(1, 5, 4, 4), "5 channels"),
        (torch.zeros(4, 4), "shape"),
        (np.zeros((3, 8, 8), dtype=np.uint8), "channels-first"),
        (np.full((4, 4, 3), 2.0), "[0, 1]"),
        (np.zeros((4, 4, 3), dtype=np.complex64), "dtype"),
        (torch.tensor([[[[float("nan")]]]]).expand(1, 3, 1, 1), "NaN"),
        ("astronaut.png", "str"),
    ],
)
def test_bad_input_gets_one_clear_sentence(bad, words):
    with pytest.raises(InputError) as err:
        images.to_tensor(bad)
    message = str(err.value)
    assert words in message
    assert "\n" not in message and message.endswith(".")


def test_check_image_catches_range_channels_and_divisibility():
    ok = torch.zeros(1, 3, 16, 16)
    assert images.check_image(ok, multiple_of=8) is ok
    with pytest.raises(InputError, match="0..255"):
        images.check_image(ok + 100)
    with pytest.raises(InputError, match="4 channels"):
        images.check_image(torch.zeros(1, 4, 16, 16))
    with pytest.raises(InputError, match="is 16x12 pixels .* not divisible by 8; .* e.g. 16x16"):
        images.check_image(torch.zeros(1, 3, 12, 16), multiple_of=8)
    # a 13-wide, 7-high image once got "e.g. 0x8": the suggestion is the nearest size with every side >= 8
    with pytest.raises(InputError, match=r"is 13x7 pixels .* a multiple of 8, e\.g\. 16x8\.$"):
        images.check_image(torch.zeros(1, 3, 7, 13), multiple_of=8)
    with pytest.raises(InputError, match="batch axis"):
        images.check_image(torch.zeros(3, 16, 16))


def test_load_image_reads_files_and_rejects_bad_ones(tmp_path):
    path = tmp_path / "rgba.png"
    Image.fromarray(np.full((10, 20, 4), 255, dtype=np.uint8), mode="RGBA").save(path)
    x = images.load_image(path, size=8)
    assert x.shape == (1, 3, 8, 8)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="cannot read"):
        images.load_image(broken)
    with pytest.raises(InputError, match="no image file"):
        images.load_image(tmp_path / "missing.png")


def test_psnr_known_values():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[0] += 0.1  # MSE 0.01 -> 10 log10(4 / 0.01) = 26.02 dB
    b[1] += 0.2  # MSE 0.04 -> 20.0 dB
    p = images.psnr(a, b)
    assert torch.allclose(p, torch.tensor([10 * np.log10(400), 10 * np.log10(100)], dtype=torch.float32), atol=1e-4)
    with pytest.raises(InputError, match="same shape"):
        images.psnr(a, b[:1])


def test_grid_places_images_in_rows():
    x = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 0.0, 0.5)])
    g = images.grid(x, nrow=2, pad=1)
    assert g.shape == (3, 1 + 2 * 5, 1 + 2 * 5)
    assert torch.all(g[:, 1:5, 1:5] == -1) and torch.all(g[:, 1:5, 6:10] == 0) and torch.all(g[:, 6:10, 1:5] == 0.5)


def test_resize_shorter_side_and_center_crop():
    x = torch.zeros(1, 3, 100, 200)
    y = images.resize(x, 50)
    assert y.shape == (1, 3, 50, 100)
    assert images.center_crop(y, 50).shape == (1, 3, 50, 50)
    with pytest.raises(InputError, match="resize it first"):
        images.center_crop(y, 60)


# ---- files as a phone, a scanner or a scientific camera writes them (issue 14)


def _arrow(width: int = 128, height: int = 64) -> np.ndarray:
    """an asymmetric picture (a red top-left corner, a blue bottom edge) so every rotation and flip looks different"""
    a = np.full((height, width, 3), 200, dtype=np.uint8)
    a[: height // 4, : width // 4] = [220, 30, 30]
    a[-height // 8 :, :] = [30, 30, 220]
    return a


def _with_orientation(a: np.ndarray, orientation: int) -> Image.Image:
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation: how a viewer must turn the stored pixels
    img.info["exif"] = exif.tobytes()
    return img


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("max_side", [None, 32])
def test_exif_orientation_is_applied_as_a_viewer_shows_it(tmp_path, orientation, max_side):
    path = tmp_path / "phone.png"
    img = _with_orientation(_arrow(), orientation)
    img.save(path, exif=img.info["exif"])
    shown = ImageOps.exif_transpose(Image.open(path))  # what an image viewer displays
    x = images.load_image(path, max_side=max_side)
    if max_side is None:
        assert images.to_pil(x).tobytes() == shown.convert("RGB").tobytes()  # exact, pixel for pixel
    else:
        expected = images.resize(images.to_tensor(shown), tuple(x.shape[-2:]))
        assert images.psnr(x, expected).item() > 30  # same picture, shrunk while decoding
    assert (x.shape[-1], x.shape[-2]) == images.fit_within(*images.image_size(path), max_side or 1000)
    assert images.image_size(path) == ((64, 128) if orientation >= 5 else (128, 64))


def test_phone_jpeg_with_orientation_6_loads_upright(tmp_path):
    path = tmp_path / "phone.jpg"
    img = _with_orientation(_arrow(), 6)  # stored 128 wide x 64 high, displayed turned: 64 wide x 128 high
    img.save(path, exif=img.info["exif"], quality=95)
    x = images.load_image(path)
    assert x.shape == (1, 3, 128, 64)
    red = x[0, 0] - x[0, 2]  # the red corner, stored top-left, is shown top-right after a 90 degree turn
    assert red[:16, -16:].mean() > 1 and red[-16:, :16].mean() < 0.5
    assert images.to_tensor(Image.open(path)).shape == (1, 3, 128, 64)  # to_tensor of an opened file too


def test_16_bit_grayscale_png_is_scaled_by_its_full_range(tmp_path):
    a = np.linspace(0, 65535, 64 * 32).round().astype(np.uint16).reshape(32, 64)
    a[0, 0], a[0, 1] = 0, 65535
    path = tmp_path / "scan16.png"
    Image.fromarray(a).save(path)
    x = images.load_image(path)
    expected = torch.from_numpy(a.astype(np.float64) / 65535 * 2 - 1).float()
    assert torch.allclose(x[0, 1], expected, atol=1e-6)  # not clipped to white at 255
    assert x[0, :, 16, 32].std() == 0 and abs(x.mean().item()) < 0.01  # gray, and mid-gray on average
    half = images.load_image(path, max_side=16)  # the reduced path too
    assert abs(half.mean().item() - x.mean().item()) < 0.01


def test_32_bit_integer_images_beyond_16_bits_are_refused(tmp_path):
    path = tmp_path / "counts.tif"
    Image.fromarray(np.full((8, 8), 1_000_000, dtype=np.int32)).save(path)
    with pytest.raises(InputError, match="beyond 16 bits"):
        images.load_image(path)


def test_float_tiff_in_0_1_is_read_as_is_and_other_ranges_are_refused(tmp_path):
    a = np.linspace(0, 1, 32 * 16, dtype=np.float32).reshape(16, 32)
    path = tmp_path / "linear.tif"
    Image.fromarray(a).save(path)
    x = images.load_image(path)
    assert torch.allclose(x[0, 2], torch.from_numpy(a * 2 - 1), atol=1e-6)  # not black
    Image.fromarray(a * 255).save(path)
    with pytest.raises(InputError, match=r"span 0\.\.255; latentlab reads float images as 0\.\.1"):
        images.load_image(path)


def _png_header(width: int, height: int) -> bytes:
    """a PNG file that says it is width x height RGB but holds almost no data (a decompression bomb's header)"""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_200_megapixel_file_gets_one_sentence_not_pillows_traceback(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(20_000, 10_000))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded a file it should refuse"))
    with pytest.raises(InputError) as err:
        images.load_image(path)
    message = str(err.value)
    assert "20000x10000 (200 megapixels)" in message and "decompression bombs" in message
    assert "\n" not in message and message.endswith(".")
    assert images.image_size(path) == (20_000, 10_000)  # the header alone is fine to read


def test_size_is_checked_against_free_memory_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(_png_header(12_000, 8_000))
    monkeypatch.setattr(images, "available_memory", lambda device: 2_000_000_000)  # Binder: about 2 GB
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded a file that does not fit"))
    with pytest.raises(InputError, match=r"12000x8000 \(96 megapixels\) and needs about 2\.\d GB .* 2\.0 GB is free"):
        images.load_image(path)  # whole: 96 M pixels as floats


def test_memory_errors_while_decoding_become_one_sentence(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    Image.fromarray(_arrow()).save(path)

    def no_memory(self):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried to "
                           "allocate 4000000000 bytes.")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_memory)
    with pytest.raises(InputError, match="ran out of memory decoding photo.png"):
        images.load_image(path)


def test_large_files_are_decoded_reduced_when_they_will_be_shrunk(tmp_path, monkeypatch):
    a = np.stack([*np.meshgrid(np.linspace(0, 255, 1600), np.linspace(0, 255, 1200)), np.full((1200, 1600), 99.0)], -1)
    seen = []
    real = images.to_tensor
    monkeypatch.setattr(images, "to_tensor", lambda img: seen.append(img.size) or real(img))
    for name in ("photo.jpg", "photo.png"):
        path = tmp_path / name
        Image.fromarray(a.astype(np.uint8)).save(path)
        x = images.load_image(path, max_side=100)
        assert x.shape == (1, 3, 75, 100)
        assert seen[-1][0] <= 4 * 100  # decoded at most 4x the final size (1/8 or 1/4 of the pixels per side)
        full = images.resize(real(Image.open(path)), (75, 100))
        assert images.psnr(x, full).item() > 35  # the same picture as decoding everything, then shrinking
    assert images.load_image(path, size=50).shape == (1, 3, 50, 50) and seen[-1][0] <= 4 * 67


def test_folders_and_damaged_files_get_one_sentence(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        images.load_image(tmp_path)
    path = tmp_path / "cut.png"
    Image.fromarray(_arrow()).save(path)
    path.write_bytes(path.read_bytes()[:200])  # a download that stopped half-way
    with pytest.raises(InputError, match="damaged"):
        images.load_image(path)


# ---- the Python API's raw errors, now one sentence each (issue 14)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: images.grid([]), "empty list"),
        (lambda: images.grid(torch.zeros(3, 8, 8)), "batch of images (B, C, H, W)"),
        (lambda: images.grid(torch.zeros(0, 3, 8, 8)), "empty batch"),
        (lambda: images.grid([torch.zeros(3, 8, 8), torch.zeros(3, 4, 4)]), "differ in size"),
        (lambda: images.to_pil(torch.zeros(4, 8, 8)), "(3, H, W) or (1, H, W)"),
        (lambda: images.resize(torch.zeros(1, 3, 8, 8), 0), "positive whole number"),
        (lambda: images.resize(torch.zeros(1, 3, 8, 8), (8, -1)), "positive whole number"),
        (lambda: images.resize(torch.zeros(3, 8, 8), 4), "x[None]"),
    ],
)
def test_api_misuse_gets_one_sentence(call, words):
    with pytest.raises(InputError) as err:
        call()
    message = str(err.value)
    assert words in message and "\n" not in message and message.endswith(".")


def test_grid_of_a_list_and_to_pil_of_one_channel():
    tiles = [torch.full((3, 4, 4), -1.0), torch.full((1, 3, 4, 4), 1.0)]
    assert images.grid(tiles, nrow=2, pad=1).shape == (3, 6, 11)
    gray = images.to_pil(torch.linspace(-1, 1, 16).reshape(1, 4, 4))
    assert gray.mode == "L" and gray.size == (4, 4) and gray.getextrema() == (0, 255)
