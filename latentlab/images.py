"""Images as tensors: convert PIL / numpy / uint8 to float (B, 3, H, W) in [-1, 1] and back; grids; PSNR.

The range [-1, 1] is Stable Diffusion's convention (its VAE expects `2 * x - 1` of a [0, 1] image).
Conversions that change content are documented here: grayscale is repeated to 3 channels and RGBA is
composited on white. Anything else that does not look like an image gets an InputError that says why.
Lesson 01 introduces it; lessons 02-05, 08 and 09 measure with its PSNR.
"""

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from latentlab.errors import InputError

RANGE_TOLERANCE = 1e-3  # float rounding allowed beyond [-1, 1]


def to_tensor(x) -> torch.Tensor:
    """PIL / numpy / torch image(s) -> float (B, 3, H, W) in [-1, 1]"""
    if isinstance(x, Image.Image):
        return _from_pil(x)
    if isinstance(x, np.ndarray):
        return _from_numpy(x)
    if isinstance(x, torch.Tensor):
        return _from_torch(x)
    raise InputError(f"cannot make an image from a {type(x).__name__}; pass a PIL image, a numpy array or a tensor.")


def _from_pil(img: Image.Image) -> torch.Tensor:
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)  # transparent pixels become white
    return _from_numpy(np.asarray(img.convert("RGB")))


def _from_numpy(a: np.ndarray) -> torch.Tensor:
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim == 3 and a.shape[-1] not in (1, 3, 4) and a.shape[0] in (1, 3, 4):
        raise InputError(
            f"numpy image of shape {a.shape} looks channels-first; numpy images are (H, W, C): "
            "use a.transpose(1, 2, 0)."
        )
    if a.ndim not in (3, 4) or a.shape[-1] not in (1, 3, 4):
        raise InputError(
            f"numpy image of shape {a.shape} is not (H, W), (H, W, C) or (B, H, W, C) with C in 1, 3, 4."
        )
    if np.issubdtype(a.dtype, np.integer):
        if a.min() < 0 or a.max() > 255:
            raise InputError(f"integer image values span {a.min()}..{a.max()}; expected uint8 values 0..255.")
        t = torch.tensor(a, dtype=torch.float32) / 255.0  # a copy: PIL's arrays are read-only
    elif np.issubdtype(a.dtype, np.floating):
        t = torch.tensor(a, dtype=torch.float32)
        check_range(t, "float numpy image", 0.0, 1.0)
    else:
        raise InputError(f"numpy image has dtype {a.dtype}; use uint8 (0..255) or float (0..1).")
    t = t if t.ndim == 4 else t[None]
    t = t.permute(0, 3, 1, 2)  # (B, C, H, W) in [0, 1]
    return _to_rgb(t) * 2 - 1


def _from_torch(t: torch.Tensor) -> torch.Tensor:
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise InputError(f"image tensor has shape {tuple(t.shape)}; expected (C, H, W) or (B, C, H, W).")
    if t.shape[1] not in (1, 3, 4):
        raise InputError(f"image tensor has {t.shape[1]} channels; expected 1, 3 or 4 (channels-first).")
    if t.dtype == torch.uint8:
        return _to_rgb(t.float() / 255) * 2 - 1
    if not t.is_floating_point():
        raise InputError(f"image tensor has dtype {t.dtype}; use uint8 (0..255) or float in [-1, 1].")
    t = t.float()
    check_range(t, "float image")
    if t.shape[1] != 3:
        return _to_rgb((t + 1) / 2) * 2 - 1
    return t.clamp(-1, 1)


def _to_rgb(t01: torch.Tensor) -> torch.Tensor:
    """(B, 1|3|4, H, W) in [0, 1] -> (B, 3, H, W): gray repeated, alpha composited on white"""
    if t01.shape[1] == 1:
        return t01.repeat(1, 3, 1, 1)
    if t01.shape[1] == 4:
        rgb, alpha = t01[:, :3], t01[:, 3:]
        return rgb * alpha + (1 - alpha)
    return t01


def check_range(
    t: torch.Tensor, name: str = "image", low: float = -1.0, high: float = 1.0, fix: str = ""
) -> tuple[float, float]:
    """the one range check: (min, max) of a tensor of finite values within [low, high] (give or take float rounding),
    or an InputError that says what was found and what to do (`fix`, or a hint for 0..255 values)"""
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN or infinite values; check the step that produced it.")
    lo, hi = t.min().item(), t.max().item()
    if lo < low - RANGE_TOLERANCE or hi > high + RANGE_TOLERANCE:
        if not fix:
            fix = "rescale or clamp it" if hi <= 2 else (
                "it looks like 0..255: use x / 127.5 - 1" if low < 0 else "it looks like 0..255: use x / 255")
        raise InputError(f"{name} values span {lo:.3g}..{hi:.3g}; expected [{low:g}, {high:g}] ({fix}).")
    return lo, hi


def check_image(x: torch.Tensor, name: str = "image", multiple_of: int = 1) -> torch.Tensor:
    """raise InputError unless x is a float (B, 3, H, W) tensor in [-1, 1], sides divisible by `multiple_of`"""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} is a {type(x).__name__}; convert it with latentlab.images.to_tensor first.")
    if x.ndim != 4:
        raise InputError(f"{name} has shape {tuple(x.shape)}; expected (B, 3, H, W) — add a batch axis with x[None].")
    if x.shape[1] != 3:
        raise InputError(f"{name} has {x.shape[1]} channels; expected 3 (RGB) — convert with images.to_tensor.")
    if not x.is_floating_point():
        raise InputError(f"{name} has dtype {x.dtype}; expected float in [-1, 1] — convert with images.to_tensor.")
    check_range(x, name)
    h, w = x.shape[-2:]
    if h % multiple_of or w % multiple_of:
        fit_h, fit_w = (h // multiple_of) * multiple_of, (w // multiple_of) * multiple_of
        raise InputError(
            f"{name} size {h}x{w} is not divisible by {multiple_of}; crop or resize it to e.g. {fit_h}x{fit_w}."
        )
    return x


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) or (3, H, W) in [-1, 1] -> uint8 (B, H, W, 3) or (H, W, 3)"""
    single = x.ndim == 3
    x = x[None] if single else x
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    a = a.permute(0, 2, 3, 1).numpy()
    return a[0] if single else a


def to_pil(x: torch.Tensor) -> Image.Image:
    """one image (3, H, W) or (1, 3, H, W) in [-1, 1] -> PIL RGB"""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise InputError(f"to_pil takes one image but got a batch of {x.shape[0]}; use grid(x) first.")
        x = x[0]
    return Image.fromarray(to_numpy(x))


def load_image(path, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """image file -> (1, 3, H, W) in [-1, 1], optionally resized (shorter side) and center-cropped to `size`"""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no image file at {path}; check the path.")
    try:
        with Image.open(path) as img:
            img.load()
            x = to_tensor(img)
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"cannot read {path} as an image ({err.__class__.__name__}); use a PNG or JPEG file.") from None
    if size is not None:
        x = center_crop(resize(x, min(_pair(size)) if isinstance(size, int) else max(_pair(size))), size)
    return x


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize(x: torch.Tensor, size: int | tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """resize (B, C, H, W); an int sets the shorter side (aspect kept), a pair sets (H, W)"""
    h, w = x.shape[-2:]
    if isinstance(size, int):
        scale = size / min(h, w)
        out = (max(size, round(h * scale)), max(size, round(w * scale)))
    else:
        out = _pair(size)
    align = False if mode in ("bilinear", "bicubic") else None
    y = F.interpolate(x, size=out, mode=mode, align_corners=align, antialias=mode in ("bilinear", "bicubic"))
    return y.clamp(-1, 1)


def center_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """central (H, W) window of (B, C, H, W)"""
    th, tw = _pair(size)
    h, w = x.shape[-2:]
    if th > h or tw > w:
        raise InputError(f"cannot crop {th}x{tw} from an image of {h}x{w}; resize it first.")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw]


def grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> one (C, H', W') mosaic with nrow images per row, white padding"""
    b, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / nrow)
    out = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad, dtype=images.dtype)
    for i, img in enumerate(images.detach().cpu()):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        out[:, top : top + h, left : left + w] = img
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """peak signal-to-noise ratio in dB per image, for images in [-1, 1] (peak-to-peak 2): 10 log10(4 / MSE)"""
    if a.shape != b.shape:
        raise InputError(f"PSNR needs two images of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    a = a if a.ndim == 4 else a[None]
    b = b if b.ndim == 4 else b[None]
    mse = (a.float().clamp(-1, 1) - b.float().clamp(-1, 1)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))
