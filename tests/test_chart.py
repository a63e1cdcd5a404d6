import math

import numpy as np
import pytest
import torch

from latentlab import chart
from latentlab.images import to_numpy

pytestmark = pytest.mark.usefixtures("one_thread")

# McCamy, Marcus & Davidson 1976, the ColorChecker's xyY under CIE illuminant C (as in colour-science's
# DATA_COLORCHECKER1976), in chart order
MCCAMY_1976_XYY = [
    (0.4002, 0.3504, 0.1005), (0.3773, 0.3446, 0.3582), (0.2470, 0.2514, 0.1933), (0.3372, 0.4220, 0.1329),
    (0.2651, 0.2400, 0.2427), (0.2608, 0.3430, 0.4306), (0.5060, 0.4070, 0.3005), (0.2110, 0.1750, 0.1200),
    (0.4533, 0.3058, 0.1977), (0.2845, 0.2020, 0.0656), (0.3800, 0.4887, 0.4429), (0.4729, 0.4375, 0.4306),
    (0.1866, 0.1285, 0.0611), (0.3046, 0.4782, 0.2339), (0.5385, 0.3129, 0.1200), (0.4480, 0.4703, 0.5910),
    (0.3635, 0.2325, 0.1977), (0.1958, 0.2519, 0.1977), (0.3101, 0.3163, 0.9001), (0.3101, 0.3163, 0.5910),
    (0.3101, 0.3163, 0.3620), (0.3101, 0.3163, 0.1977), (0.3101, 0.3163, 0.0900), (0.3101, 0.3163, 0.0313),
]


def _xyy_c_to_srgb255(xyy) -> torch.Tensor:
    """xyY under illuminant C -> Bradford adaptation to D65 -> sRGB (IEC 61966-2-1) 0..255"""
    x, y, big_y = torch.tensor(xyy, dtype=torch.float64).T
    xyz = torch.stack([x * big_y / y, big_y, (1 - x - y) * big_y / y], 1)
    bradford = torch.tensor([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]], dtype=torch.float64)
    white_c, white_d65 = torch.tensor([0.98074, 1.0, 1.18232], dtype=torch.float64), torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
    adapt = torch.linalg.inv(bradford) @ torch.diag((bradford @ white_d65) / (bradford @ white_c)) @ bradford
    to_linear_srgb = torch.tensor([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]], dtype=torch.float64)
    linear = (xyz @ adapt.T @ to_linear_srgb.T).clamp(0, 1)
    encoded = torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return encoded * 255


def test_published_srgb_values_agree_with_mccamys_measurements():
    derived = _xyy_c_to_srgb255(MCCAMY_1976_XYY)
    published = torch.tensor([rgb for _, rgb in chart.COLORCHECKER], dtype=torch.float64)
    difference = (derived - published).abs()
    assert difference.max() <= 8.5 and difference.mean() <= 2.5, difference.max(1).values.tolist()
    # a typo in one value (green as 79 instead of 70, seen in the wild) would be caught
    wrong = published.clone()
    wrong[13, 0] = 79
    assert (derived - wrong).abs().max() > 8.5


def test_colorchecker_image_holds_the_published_values_in_place():
    image = chart.colorchecker()
    assert image.shape == (1, 3, 4 * 64, 6 * 64)
    pixels = to_numpy(image)[0]  # (256, 384, 3) uint8
    for i, (name, rgb) in enumerate(chart.COLORCHECKER):
        row, col = divmod(i, 6)
        block = pixels[row * 64 : (row + 1) * 64, col * 64 : (col + 1) * 64]
        assert (block == rgb).all(), name
    assert chart.patch_errors(image).abs().max() < 1e-3
    assert chart.COLORCHECKER[16][0] == "magenta" and chart.COLORCHECKER[18][1] == (243, 243, 242)


def test_patch_errors_see_a_cast_and_ignore_the_border():
    image = chart.colorchecker()
    cast = (image + torch.tensor([20, 0, -20]).view(1, 3, 1, 1) / 127.5).clamp(-1, 1)
    errors = chart.patch_errors(cast)
    assert errors[:, 0].median() == pytest.approx(20, abs=0.1) and errors[:, 2].median() == pytest.approx(-20, abs=0.1)
    blurred_edges = image.clone()
    blurred_edges[..., :, 60:68] = 0  # damage only a patch's outer 4 pixels
    assert chart.patch_errors(blurred_edges).abs().max() < 1e-3


def test_hue_sweep_has_every_hue_and_both_saturations():
    sweep = chart.hue_sweep()
    assert sweep.shape == (1, 3, 256, 384) and sweep.min() >= -1 and sweep.max() <= 1
    rgb = (sweep[0, :, 0] + 1) / 2  # top row: full saturation, full value
    hue = np.unwrap(torch.atan2(math.sqrt(3) * (rgb[1] - rgb[2]), 2 * rgb[0] - rgb[1] - rgb[2]).numpy())  # left to right
    assert (np.diff(hue) > 0).all() and hue[-1] - hue[0] == pytest.approx(2 * math.pi, abs=0.05)  # once round the circle
    assert (rgb.max(0).values - rgb.min(0).values).min() > 0.99  # fully saturated
    bottom = (sweep[0, :, 128] + 1) / 2
    assert (bottom.max(0).values - bottom.min(0).values).max() == pytest.approx(0.5, abs=0.01)
    assert torch.allclose(chart.hsv_to_rgb(torch.tensor(1 / 3), torch.tensor(1.0), torch.tensor(1.0)), torch.tensor([0.0, 1.0, 0.0]))


def test_colour_chart_parts_fit_the_vae():
    for name, image in chart.colour_chart().items():
        assert image.shape[-2] % 8 == 0 and image.shape[-1] % 8 == 0, name
