"""latentlab.quality: the exact Shapes detector recognises real shapes (also blurred or grainy) and rejects the rest."""

import math

import pytest
import torch
import torch.nn.functional as F

from latentlab import data, quality
from latentlab.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = torch.arange(-3, 4).float()
    k = torch.exp(-r**2 / (2 * sigma**2))
    k = k / k.sum()
    h = F.pad(x, (3, 3, 3, 3), mode="replicate").reshape(-1, 1, x.shape[2] + 6, x.shape[3] + 6)
    return F.conv2d(F.conv2d(h, k[None, None, None, :]), k[None, None, :, None]).reshape(x.shape)


def test_area_constants_match_the_drawn_shapes():
    for kind, coef in enumerate(quality.AREA):
        mask = data._shape_mask(kind, 600, 300, 300, 200, 0.3)
        assert abs(mask.sum().item() / 200**2 - coef) / coef < 0.01


def test_real_shapes_are_recognised_with_their_own_class():
    shapes, labels = data.shapes_batch(48, size=64, seed=3)
    verdict = quality.judge(shapes)
    assert verdict.recognised == 1.0 and verdict.mean_iou > 0.95
    assert torch.equal(verdict.labels, labels)
    assert sum(verdict.class_counts.values()) == 48 and verdict.balance() > 0.9
    soft = quality.judge(_blur(shapes, 1.0) + 0.05 * torch.randn(shapes.shape, generator=torch.Generator().manual_seed(0)))
    assert soft.recognised >= 0.95  # soft edges and a little grain are still a shape


def test_noise_flat_images_and_two_shapes_are_not():
    g = torch.Generator().manual_seed(1)
    assert quality.judge((0.5 * torch.randn(16, 3, 64, 64, generator=g)).clamp(-1, 1)).recognised == 0.0
    assert quality.judge(torch.zeros(4, 3, 64, 64)).recognised == 0.0  # one colour, no shape
    a, _ = data.shapes_batch(32, size=64, seed=4)
    b, _ = data.shapes_batch(32, size=64, seed=5)
    two = torch.where((b - b[:, :, :1, :1]).abs().sum(1, keepdim=True) > 0.01, b, a)  # b's shape pasted onto a
    assert quality.judge(two).recognised < 0.3


def test_best_shape_names_a_rotated_square_and_rejects_a_ring():
    square = data._shape_mask(1, 64, 30.5, 33.2, 16.0, math.radians(27))
    kind, iou = quality.best_shape(square)
    assert kind == 1 and iou > 0.93
    ring = data._shape_mask(0, 64, 32, 32, 18, 0) & ~data._shape_mask(0, 64, 32, 32, 12, 0)
    assert quality.best_shape(ring)[1] < 0.8
    assert quality.best_shape(torch.zeros(64, 64, dtype=torch.bool)) == (-1, 0.0)


def _image(mask: torch.Tensor) -> torch.Tensor:
    """a bool mask -> a (1, 3, H, W) two-colour image, foreground on a flat background"""
    background, foreground = torch.tensor([-0.4, 0.2, -0.1]), torch.tensor([0.8, -0.6, 0.5])
    x = background[:, None, None].expand(3, *mask.shape).clone()
    x[:, mask] = foreground[:, None]
    return x[None]


_YS, _XS = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")


def _superellipse(n: float) -> torch.Tensor:
    """|x|^n + |y|^n <= 1: n = 2 is a circle, large n a square; 3-4 is a rounded square, neither one"""
    return ((_XS - 32).abs() / 14) ** n + ((_YS - 32).abs() / 14) ** n <= 1


def _lumpy_disc(amplitude: float) -> torch.Tensor:
    theta, r = torch.atan2(_YS - 32, _XS - 32), torch.hypot(_XS - 32, _YS - 32)
    return r <= 15 * (1 + amplitude * (torch.sin(3 * theta) + torch.cos(5 * theta)))


def test_a_perfect_circle_is_never_a_square_and_a_square_never_a_circle():
    circle = data._shape_mask(0, 64, 32, 32, 16, 0)
    square = data._shape_mask(1, 64, 31.3, 32.6, 16, math.radians(20))
    for mask, own, other in [(circle, 0, 1), (square, 1, 0)]:
        scores = quality.shape_scores(mask)
        assert scores[own] > 0.95 and scores[own] - scores[other] > 0.1  # equal-area circle/square: IoU ~0.84
        verdict = quality.judge(_image(mask))
        assert verdict.labels.tolist() == [own]
        assert verdict.class_counts[data.SHAPE_CLASSES[other]] == 0


def test_every_perfect_shape_clears_both_rules_by_a_margin():
    shapes, labels = data.shapes_batch(64, size=32, seed=7)  # the smallest size the course draws: the hardest
    verdict = quality.judge(shapes)
    own = verdict.scores.gather(1, labels[:, None])[:, 0]
    others = verdict.scores.scatter(1, labels[:, None], 0.0).max(dim=1).values
    assert own.min() >= 0.93 and (own - others).min() >= 0.1  # vs min_iou 0.85, margin 0.05
    assert torch.equal(verdict.labels, labels)


@pytest.mark.parametrize("name, mask", [
    ("rounded square, n=3", _superellipse(3)),
    ("rounded square, n=4", _superellipse(4)),
    ("lumpy disc", _lumpy_disc(0.1)),
])
def test_near_misses_between_classes_are_rejected(name, mask):
    assert quality.judge(_image(mask)).recognised == 0.0, name
    # the judge before the margin rule (IoU >= 0.8 alone) called each of these a shape: the rules are what reject it
    assert quality.judge(_image(mask), min_iou=0.8, margin=0.0).recognised == 1.0, name


def test_a_slightly_rounded_square_is_still_a_square():
    verdict = quality.judge(_image(_superellipse(8)))
    assert verdict.labels.tolist() == [1]


def test_per_class_shares():
    verdict = quality.Judgement(0.5, 1.0, 0.5, 0.9, {"circle": 3, "square": 1, "triangle": 0, "cross": 0})
    assert verdict.per_class() == {"circle": 0.75, "square": 0.25, "triangle": 0.0, "cross": 0.0}
    none = quality.Judgement(0.0, 0.0, 0.0, 0.0, {"circle": 0, "square": 0, "triangle": 0, "cross": 0})
    assert set(none.per_class().values()) == {0.0}


def test_balance_and_bad_input():
    even = quality.Judgement(1.0, 1.0, 1.0, 0.9, {"circle": 5, "square": 5, "triangle": 5, "cross": 5})
    assert abs(even.balance() - 1.0) < 1e-9
    one = quality.Judgement(1.0, 1.0, 1.0, 0.9, {"circle": 9, "square": 0, "triangle": 0, "cross": 0})
    assert one.balance() == 0.0 and f"{one.balance():.2f}" == "0.00"  # not -0.00 in the lesson's table
    with pytest.raises(InputError, match="decode latents to images first"):
        quality.judge(torch.zeros(2, 4, 8, 8))


def test_a_shape_recognised_as_another_class_than_asked_does_not_count_as_asked():
    circle = _image(data._shape_mask(0, 64, 32, 32, 16, 0))
    square = _image(data._shape_mask(1, 64, 31.3, 32.6, 16, math.radians(20)))
    blob = _image(_superellipse(3))  # a rounded square: neither a circle nor a square
    samples = torch.cat([circle, square, circle, blob, square])
    asked = torch.tensor([0, 1, 1, 1, 3])  # right, right, a circle for a square, a blob, a square for a cross
    verdict = quality.judge(samples)
    assert verdict.labels.tolist() == [0, 1, 0, -1, 1]  # four real shapes: `recognised` counts the wrong ones too
    assert quality.recognised_as_asked(verdict, asked) == 0.4
    assert quality.by_request(verdict, asked) == {
        "circle": {"asked": 1, "as_asked": 1, "other_shape": 0, "not_recognised": 0},
        "square": {"asked": 3, "as_asked": 1, "other_shape": 1, "not_recognised": 1},
        "triangle": {"asked": 0, "as_asked": 0, "other_shape": 0, "not_recognised": 0},
        "cross": {"asked": 1, "as_asked": 0, "other_shape": 1, "not_recognised": 0},
    }


def test_real_shapes_asked_for_by_their_own_labels_are_all_as_asked():
    shapes, labels = data.shapes_batch(24, size=64, seed=8)
    verdict = quality.judge(shapes)
    assert quality.recognised_as_asked(verdict, labels) == 1.0
    assert quality.recognised_as_asked(verdict, (labels + 1) % 4) == 0.0  # every one the wrong class
    assert sum(row["asked"] for row in quality.by_request(verdict, labels).values()) == 24
    with pytest.raises(InputError, match="the class asked for of each judged sample"):
        quality.recognised_as_asked(verdict, labels[:5])


def test_describe_requests_names_the_shape_a_failed_class_came_out_as():
    table = {"circle": {"asked": 16, "as_asked": 16, "other_shape": 0, "not_recognised": 0},
             "square": {"asked": 16, "as_asked": 0, "other_shape": 13, "not_recognised": 3},
             "triangle": {"asked": 16, "as_asked": 1, "other_shape": 1, "not_recognised": 14},
             "cross": {"asked": 16, "as_asked": 8, "other_shape": 0, "not_recognised": 8}}
    counts = {"circle": 30, "square": 0, "triangle": 1, "cross": 8}  # 14 circles were asked for as something else
    assert quality.drawn_as_asked(table) == ["circle"]  # half of the crosses is not "more than half"
    assert quality.describe_requests(table, counts) == [
        "circles: drawn, 16 of 16 as asked",
        "squares: not drawn, 0 of 16 as asked; 13 judged circles, 3 matched no shape",
        "triangles: not drawn, 1 of 16 as asked; 1 judged a circle, 14 matched no shape",
        "crosses: not drawn, 8 of 16 as asked; 8 matched no shape",
    ]
    # two classes took other requests' shapes: which one a square became is not known from the counts
    counts_two = {"circle": 29, "square": 0, "triangle": 2, "cross": 8}
    assert "13 judged another shape" in quality.describe_requests(table, counts_two)[1]


def test_describe_requests_agrees_with_the_judges_own_labels():
    shapes, labels = data.shapes_batch(24, size=64, seed=8)
    verdict = quality.judge(shapes)
    asked = labels.clone()
    asked[labels == 0] = 1  # every circle was "asked for" as a square
    sentences = quality.describe_requests(quality.by_request(verdict, asked), verdict.class_counts)
    n_circles, n_squares = int((labels == 0).sum()), int((labels == 1).sum())
    assert sentences[0] == f"squares: drawn, {n_squares} of {n_circles + n_squares} as asked; {n_circles} judged circles"
    assert len(sentences) == 3  # no circle was asked for: no sentence for circles


def test_disc_departure_is_zero_for_a_disc_and_the_corner_for_a_square():
    assert quality.disc_departure(data._shape_mask(0, 64, 32, 32, 16, 0)) < 0.5
    side = 2 * 0.8 * 16  # the square of radius 16
    corner = side / math.sqrt(2) - side / math.sqrt(math.pi)  # half-diagonal minus the equal-area disc's radius
    assert abs(quality.disc_departure(data._shape_mask(1, 64, 32, 32, 16, 0)) - corner) < 1
    assert quality.disc_departure(data._shape_mask(3, 64, 32, 32, 16, 0)) > corner  # a cross strays further
    assert quality.disc_departure(torch.zeros(8, 8, dtype=torch.bool)) == 0.0
