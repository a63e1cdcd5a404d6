"""Sample quality for generated Shapes: an exact detector of one flat shape on a flat background.

Every image of `latentlab.data.Shapes` is two flat colours: a background, and one circle, square, triangle or
cross. A sample is *recognised* when (1) its pixels fall into two clearly different flat colours (2-means
clustering; soft edges may mix the two, a third colour may not), and (2) the pixels of the foreground colour
overlap a perfect shape of one class, placed at their centroid, sized by their area and turned to the best
angle, with an intersection over union (IoU) of at least 0.85, *and* that class beats every other class by a
margin of at least 0.05 IoU. The margin matters: an equal-area circle and square overlap with IoU 0.84, so an
IoU threshold alone lets a round blob pass as a square. Perfect drawn shapes score 0.93-1.0 with their own class
and at most 0.89 with any other; rounded squares and lumpy discs fail (tests/test_quality.py). The thresholds
leave room for the VAE's own blur: the shapes VAE's reconstructions of real shapes pass 89% (docs/diffusion.md). The templates are drawn by the same
function that draws the dataset, so the judge is exact and has nothing learned that a generator could fool. The
recognised fraction and the balance of the four classes measure a generator's precision and its coverage; for a
class-conditional generator, `recognised_as_asked` and `by_request` are stricter: a square drawn when a circle was
asked for does not count, and `describe_requests` says per class, in words, what came out. `disc_departure` measures
how far a shape strays from a disc of its area, the detail a generator must draw to make it anything but a circle.
Lesson 08 uses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from latentlab.data import SHAPE_CLASSES, _shape_mask
from latentlab.errors import InputError

AREA = (math.pi, 2.56, 3 * math.sqrt(3) / 4, 2.04)  # shape area / r^2 for circle, square, triangle, cross
SYMMETRY = (None, math.pi / 2, 2 * math.pi / 3, math.pi / 2)  # rotation that maps each shape onto itself


def two_colours(images: torch.Tensor, iters: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) -> 2-means colours (B, 2, 3) [background, foreground], foreground mask (B, H, W), each
    pixel's distance to its colour (B, H, W) and to the nearest mixture of the two colours (B, H, W)"""
    B, _, H, W = images.shape
    pixels = images.flatten(2).transpose(1, 2).float()  # (B, HW, 3)
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    background = border.float().median(dim=2).values[:, None, :]  # (B, 1, 3): a shape never fills the border
    far = _sq_distances(pixels, background)[..., 0].argmax(dim=1)  # the pixel least like the background
    centres = torch.cat([background, pixels[torch.arange(B), far][:, None]], dim=1)  # (B, 2, 3)
    for _ in range(iters):  # Lloyd's algorithm with k = 2
        member = F.one_hot(_sq_distances(pixels, centres).argmin(dim=2), 2).float()  # (B, HW, 2)
        total = member.sum(1)[..., None]  # (B, 2, 1)
        centres = torch.where(total > 0, member.transpose(1, 2) @ pixels / total.clamp_min(1), centres)
    d2 = _sq_distances(pixels, centres)  # (B, HW, 2)
    assign = d2.argmin(dim=2).reshape(B, H, W)
    on_border = torch.cat([assign[:, 0], assign[:, -1], assign[:, :, 0], assign[:, :, -1]], dim=1).float().mean(1)
    swap = on_border > 0.5  # the cluster that owns the border is the background
    centres = torch.where(swap[:, None, None], centres.flip(1), centres)
    foreground = (assign == 1) ^ swap[:, None, None]
    a, ab = centres[:, :1], centres[:, 1:] - centres[:, :1]  # (B, 1, 3): background, and the way to the foreground
    mix = ((pixels - a) * ab).sum(-1, keepdim=True) / ab.square().sum(-1, keepdim=True).clamp_min(1e-8)
    off_line = (pixels - a - mix.clamp(0, 1) * ab).norm(dim=-1)  # (B, HW): blurred edges lie on the line, a 3rd colour not
    return centres, foreground, d2.min(dim=2).values.sqrt().reshape(B, H, W), off_line.reshape(B, H, W)


def _sq_distances(pixels: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(B, N, 3), (B, K, 3) -> (B, N, K) squared distances"""
    return (pixels[:, :, None, :] - centres[:, None, :, :]).square().sum(-1)


def shape_scores(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) foreground mask -> (4,) best IoU of each class's perfect shape at the mask's centroid and area"""
    H, _ = mask.shape
    area = int(mask.sum())
    if area < 4:
        return torch.zeros(len(SHAPE_CLASSES))
    ys, xs = torch.nonzero(mask, as_tuple=True)
    cx, cy = xs.float().mean().item() + 0.5, ys.float().mean().item() + 0.5  # pixel centres sit at +0.5

    def fit(kind: int, angles: list[float]) -> tuple[float, float]:
        """best (IoU, angle) of one class over some angles"""
        r = math.sqrt(area / AREA[kind])
        templates = torch.stack([_shape_mask(kind, H, cx, cy, r, a) for a in angles])  # (A, H, W)
        iou = (templates & mask).sum((1, 2)) / (templates | mask).sum((1, 2))  # (A,)
        return iou.max().item(), angles[int(iou.argmax())]

    coarse, fine = math.radians(10), math.radians(2)
    scores = {k: fit(k, [0.0] if SYMMETRY[k] is None else torch.arange(0, SYMMETRY[k], coarse).tolist())
              for k in range(len(SHAPE_CLASSES))}
    for k in sorted(scores, key=lambda k: -scores[k][0])[:2]:  # refine the two best classes around their angle
        if SYMMETRY[k] is not None:
            angle = scores[k][1]
            scores[k] = max(scores[k], fit(k, [angle + d * fine for d in (-2, -1, 1, 2)]))
    return torch.tensor([scores[k][0] for k in range(len(SHAPE_CLASSES))])


def disc_departure(mask: torch.Tensor) -> float:
    """(H, W) foreground mask -> how far (pixels) it strays from the disc of its own area at its centroid: the
    deepest pixel on the wrong side of the disc's edge, outside (a corner, a tip) or inside (a notch); 0 for a disc"""
    area = int(mask.sum())
    if area == 0:
        return 0.0
    ys, xs = torch.meshgrid(torch.arange(mask.shape[0]) + 0.5, torch.arange(mask.shape[1]) + 0.5, indexing="ij")
    cy, cx = ys[mask].mean(), xs[mask].mean()
    edge = ((ys - cy).square() + (xs - cx).square()).sqrt() - math.sqrt(area / math.pi)  # > 0 outside the disc
    wrong_side = torch.cat([edge[mask & (edge > 0)], -edge[~mask & (edge < 0)], torch.zeros(1)])
    return float(wrong_side.max())


def best_shape(mask: torch.Tensor) -> tuple[int, float]:
    """(H, W) foreground mask -> (class index, IoU) of the best-fitting perfect shape; (-1, 0.0) for no shape"""
    scores = shape_scores(mask)
    if scores.max() == 0:
        return -1, 0.0
    return int(scores.argmax()), float(scores.max())


@dataclass
class Judgement:
    """what the judge says about a batch of samples"""

    recognised: float  # fraction that is two flat colours AND matches a shape
    flat: float  # fraction that passes the two-colour test
    matched: float  # fraction whose foreground matches one shape: IoU >= the threshold and the margin over the rest
    mean_iou: float  # average best IoU over all samples
    class_counts: dict[str, int] = field(default_factory=dict)  # classes among the recognised samples
    labels: torch.Tensor | None = None  # (B,) recognised class, -1 where not recognised
    scores: torch.Tensor | None = None  # (B, 4) best IoU of each class, for the per-class table and near misses

    def per_class(self) -> dict[str, float]:
        """share of the recognised samples that each class takes (0 for every class when none is recognised)"""
        total = sum(self.class_counts.values())
        return {k: (v / total if total else 0.0) for k, v in self.class_counts.items()}

    def balance(self) -> float:
        """normalised entropy of the recognised classes: 1 = all four equally often, 0 = one class only"""
        counts = torch.tensor(list(self.class_counts.values()), dtype=torch.float64)
        if counts.sum() == 0:
            return 0.0
        p = counts[counts > 0] / counts.sum()
        entropy = float(-(p * p.log()).sum()) + 0.0  # + 0.0 turns one class's -0.0 into 0.0 (no "-0.00")
        return entropy / math.log(len(self.class_counts))

    def __str__(self) -> str:
        classes = ", ".join(f"{k} {v}" for k, v in self.class_counts.items())
        return (f"recognised {100 * self.recognised:.1f}% (flat {100 * self.flat:.1f}%, shape matched "
                f"{100 * self.matched:.1f}%, mean IoU {self.mean_iou:.2f}); {classes}; balance {self.balance():.2f}")


@torch.no_grad()
def judge(
    images: torch.Tensor,
    min_iou: float = 0.85,
    margin: float = 0.05,
    flat_share: float = 0.8,
    mixed_share: float = 0.95,
    tolerance: float = 0.3,
    contrast: float = 0.3,
) -> Judgement:
    """Judge generated Shapes images (B, 3, H, W) in [-1, 1] (clamped here).

    Args:
        min_iou: the foreground must overlap the best perfect shape at least this much (IoU)...
        margin: ...and overlap it this much more than the best shape of any other class (a round blob is not a square).
        flat_share: this share of the pixels must lie within `tolerance` of one of the two colours...
        mixed_share: ...and this share within `tolerance` of a mixture of them (a soft edge is fine, a third
            colour is not).
        tolerance: distance (RGB, in [-1, 1] units) a pixel may lie from a colour and still count as it.
        contrast: the two colours must be at least this far apart, else the image is one colour.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"judge expects images (B, 3, H, W), got {got}; decode latents to images first.")
    images = images.detach().float().cpu().clamp(-1, 1)
    centres, foreground, distance, off_line = two_colours(images)
    pure = ((distance <= tolerance).float().mean(dim=(1, 2)) >= flat_share) & (
        (off_line <= tolerance).float().mean(dim=(1, 2)) >= mixed_share)
    distinct = (centres[:, 0] - centres[:, 1]).norm(dim=1) >= contrast
    flat = pure & distinct
    scores = torch.stack([shape_scores(m) for m in foreground])  # (B, 4)
    top2 = scores.topk(2, dim=1).values  # (B, 2)
    label, iou = scores.argmax(dim=1), top2[:, 0]
    matched = (iou >= min_iou) & (top2[:, 0] - top2[:, 1] >= margin)
    ok = flat & matched
    counts = {name: int(((label == k) & ok).sum()) for k, name in enumerate(SHAPE_CLASSES)}
    return Judgement(float(ok.float().mean()), float(flat.float().mean()), float(matched.float().mean()),
                     float(iou.mean()), counts, torch.where(ok, label, torch.full_like(label, -1)), scores)


def requests(n: int) -> torch.Tensor:
    """n samples -> the class each is asked for, in turn: 0, 1, 2, 3, 0, 1, ... (equal numbers when 4 divides n)"""
    return torch.arange(n) % len(SHAPE_CLASSES)


def _requested(judgement: Judgement, requested: torch.Tensor) -> torch.Tensor:
    requested = torch.as_tensor(requested).cpu()
    if judgement.labels is None or requested.shape != judgement.labels.shape:
        got = "no labels" if judgement.labels is None else f"{len(judgement.labels)} samples"
        raise InputError(f"requested has shape {tuple(requested.shape)} but the judgement holds {got}; give the class "
                         "asked for of each judged sample, in the same order.")
    return requested


def recognised_as_asked(judgement: Judgement, requested: torch.Tensor) -> float:
    """fraction of the samples recognised as the very class they were asked for (stricter than `recognised`)"""
    requested = _requested(judgement, requested)
    return int((judgement.labels == requested).sum()) / len(requested) if len(requested) else 0.0


def _plural(name: str) -> str:
    return name + ("es" if name.endswith("s") else "s")


def drawn_as_asked(table: dict[str, dict[str, int]]) -> list[str]:
    """by_request's table -> the classes that came out as asked in more than half of their requests"""
    return [name for name, row in table.items() if 2 * row["as_asked"] > row["asked"]]


def describe_requests(table: dict[str, dict[str, int]], class_counts: dict[str, int]) -> list[str]:
    """by_request's table and the recognised class counts -> one plain sentence per class asked for.

    A class recognised more often than it was asked for and drawn as asked took the other requests' shapes; when
    only one class did, every "other shape" was that class, and the sentence names it.
    """
    unasked = {name: class_counts.get(name, 0) - row["as_asked"] for name, row in table.items()}
    sentences = []
    for name, row in table.items():
        n, hit, other, none = row["asked"], row["as_asked"], row["other_shape"], row["not_recognised"]
        if n == 0:
            continue
        verdict = "drawn" if name in drawn_as_asked({name: row}) else "not drawn"
        parts = [f"{_plural(name)}: {verdict}, {hit} of {n} as asked"]
        if other:
            takers = [k for k, v in unasked.items() if k != name and v > 0]
            what = (("a " + takers[0]) if other == 1 else _plural(takers[0])) if len(takers) == 1 else "another shape"
            parts.append(f"{other} judged {what}")
        if none:
            parts.append(f"{none} matched no shape")
        sentences.append(", ".join(parts[:1]) + ("; " + ", ".join(parts[1:]) if parts[1:] else ""))
    return sentences


def by_request(judgement: Judgement, requested: torch.Tensor) -> dict[str, dict[str, int]]:
    """per requested class: how many were asked for, recognised as asked, recognised as another shape, or neither"""
    requested = _requested(judgement, requested)
    table = {}
    for k, name in enumerate(SHAPE_CLASSES):
        got = judgement.labels[requested == k]
        table[name] = {"asked": len(got), "as_asked": int((got == k).sum()),
                       "other_shape": int(((got >= 0) & (got != k)).sum()), "not_recognised": int((got < 0).sum())}
    return table
