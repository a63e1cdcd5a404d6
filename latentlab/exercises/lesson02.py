"""Lesson 02's exercises: the autoencoder's training loss, and the size of a bicubic image with a latent's budget.

The loss is the mean squared error the lesson trains with (as `train.vae_loss` with reconstruction="mse");
the equal-size arithmetic is `baselines.bicubic_size`: 3 h w values kept, as many as the latent's 4 (H/8)(W/8).
"""

from __future__ import annotations

import math

import torch

from latentlab.baselines import bicubic_size
from latentlab.exercises import Exercise, Mistake


def reconstruction_error(recon: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """reconstructions and images (B, 3, H, W) -> the mean squared error over every value, a 0-d tensor."""
    return (recon - batch).pow(2).mean()


# ---- exercise: the reconstruction loss


def _images(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """a batch of images in [-1, 1] and imperfect reconstructions of it, each (2, 3, 8, 8)"""
    g = torch.Generator("cpu").manual_seed(seed)
    batch = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    recon = batch + 0.3 * torch.randn(2, 3, 8, 8, generator=g) + 0.1  # biased, so errors of both signs differ
    return recon, batch


def _loss_mistakes(recon: torch.Tensor, batch: torch.Tensor) -> list[Mistake]:
    error = recon - batch
    return [
        (error.abs().mean(), "that is the mean absolute error; the lesson's loss squares each difference."),
        (error.pow(2).sum(), "you added the squared errors up; take their mean, so the loss does not grow with the "
                             "image size or the batch."),
        (error.mean(), "the differences are not squared: positive and negative errors cancel out."),
        (error.pow(2).mean().sqrt(), "that is the root of the mean squared error; the loss is the mean itself."),
        (error.pow(2).mean(dim=(1, 2, 3)), "that is one error per image; the optimizer needs one number: average "
                                           "over the batch too."),
        (error.pow(2), "that is the error of every value; the optimizer needs one number, their mean."),
        ((recon.mean() - batch.mean()).pow(2), "you compared the averages of the two batches; compare them value "
                                               "by value first, then average."),
    ]


RECONSTRUCTION_ERROR = Exercise(
    name="reconstruction_error",
    lesson="02",
    reference=reconstruction_error,
    cases=lambda: [_images(0), _images(1)],
    case_names=("on a second batch",),
    mistakes=_loss_mistakes,
    hints=("Compare the reconstruction with the image value by value, make every difference count as positive, and "
           "summarise them in one number.",
           "Square the differences, then take their mean over every value of the batch (batch, channels, height, "
           "width)."),
    grad=(0,),
)


# ---- exercise: a bicubic image that keeps as many values as the latent


def _sizes() -> list[tuple[int, int, int]]:
    """(height, width, values to keep): a landscape photo, a square one, and an odd budget"""
    return [(384, 512, 4 * 48 * 64), (256, 256, 4 * 32 * 32), (100, 300, 2000)]


def _size_mistakes(height: int, width: int, keep_values: int) -> list[Mistake]:
    scale = math.sqrt(keep_values / (3 * height * width))
    ratio = keep_values / (3 * height * width)
    no_channels = math.sqrt(keep_values / (height * width))
    return [
        ((round(height * ratio), round(width * ratio)), "you scaled each side by the ratio of values; the number of "
                                                        "values grows with the square of the side, so each side "
                                                        "shrinks by the square root of that ratio."),
        ((round(height * no_channels), round(width * no_channels)), "an RGB image holds 3 values per pixel: count "
                                                                    "the channels."),
        ((int(height * scale), int(width * scale)), "round to the nearest whole pixel (int() always rounds down)."),
        ((round(width * scale), round(height * scale)), "height first, then width."),
        ((max(1, round(math.sqrt(keep_values / 3))),) * 2, "the image keeps its aspect ratio: scale both sides by the "
                                                           "same factor, starting from the photo's own height and "
                                                           "width."),
    ]


BICUBIC_SIZE = Exercise(
    name="bicubic_size",
    lesson="02",
    reference=bicubic_size,
    cases=_sizes,
    case_names=("for a 256x256 photo", "for a 100x300 image keeping 2000 values"),
    mistakes=_size_mistakes,
    hints=("Shrink both sides by the same factor s. The small image holds 3 · (s·H) · (s·W) values; choose s so that "
           "this equals keep_values, then round each side to whole pixels.",
           "3 · s² · H · W = keep_values: solve it for s."),
)
