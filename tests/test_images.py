import numpy as np
import pytest
import torch
from PIL import Image

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
    with pytest.raises(InputError, match="not divisible by 8; crop or resize it to e.g. 8x16"):
        images.check_image(torch.zeros(1, 3, 12, 16), multiple_of=8)
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
