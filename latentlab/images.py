"""Images as tensors: convert PIL / numpy / uint8 to float (B, 3, H, W) in [-1, 1] and back; load files; grids; PSNR.

Lessons 01-04 and `latentlab reconstruct`. The range [-1, 1] is Stable Diffusion's convention (its VAE expects
`2 * x - 1` of a [0, 1] image). Conversions that change content are documented here: grayscale is repeated to 3
channels, RGBA is composited on white, 16-bit images are scaled by 65535 and float images are read as 0..1.
`load_image` is the one way files are opened: it applies the EXIF orientation (a phone photo comes out as it is
displayed), checks the size against free memory before decoding, and decodes a large file already reduced when
it will be shrunk anyway. Anything that does not look like an image gets an InputError that says why.
Lesson 01 introduces it; lessons 02-05, 08 and 09 measure with its PSNR. Longer than 300 lines because opening
files safely (orientation, bit depth, size before decoding) belongs with the conversions it feeds.
"""

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from latentlab.bench import available_memory
from latentlab.errors import InputError

RANGE_TOLERANCE = 1e-3  # float rounding allowed beyond [-1, 1]
REDUCING_GAP = 2  # a file that will be shrunk is decoded reduced to at least twice its final size (as PIL's thumbnail)
TENSOR_BYTES_PER_PIXEL = 18  # to_tensor's peak per pixel: the 8-bit RGB array, its copy (3 + 3), float32 (12)


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
    img = ImageOps.exif_transpose(img)  # as displayed: a phone photo stored sideways is turned upright
    if img.mode.startswith("I") or img.mode == "F":
        return _from_numpy(_high_depth_to_unit(img))
    try:
        if img.mode in ("RGBA", "LA", "P", "PA"):
            img = img.convert("RGBA")
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, img)  # transparent pixels become white
        return _from_numpy(np.asarray(img if img.mode == "RGB" else img.convert("RGB")))
    except ValueError:
        raise InputError(f"cannot convert a PIL image of mode {img.mode} to RGB; convert it first with img.convert.") from None


def _high_depth_to_unit(img: Image.Image) -> np.ndarray:
    """16-bit integer ("I;16", or "I" holding 0..65535) or float ("F", 0..1) grayscale -> float32 (H, W) in [0, 1]"""
    a = np.asarray(img)
    if img.mode == "F":
        lo, hi = float(a.min()), float(a.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise InputError(
                f"float image values span {lo:.4g}..{hi:.4g}; latentlab reads float images as 0..1 (black..white), "
                "so rescale it to 0..1 or save it as an 8- or 16-bit image."
            )
        return a.astype(np.float32).clip(0, 1)
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi > 65535:
        raise InputError(
            f"integer image values span {lo}..{hi}, beyond 16 bits; save it as an 8- or 16-bit image (0..65535)."
        )
    return a.astype(np.float32) / 65535  # the full range of 16 bits, whatever this image happens to use


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
        t = torch.tensor(a, dtype=torch.float32).div_(255.0)  # a copy: PIL's arrays are read-only
    elif np.issubdtype(a.dtype, np.floating):
        t = torch.tensor(a, dtype=torch.float32)
        check_range(t, "float numpy image", 0.0, 1.0)
    else:
        raise InputError(f"numpy image has dtype {a.dtype}; use uint8 (0..255) or float (0..1).")
    t = t if t.ndim == 4 else t[None]
    t = t.permute(0, 3, 1, 2)  # (B, C, H, W) in [0, 1]
    return _to_rgb(t).mul_(2).sub_(1)  # in place: a 100-megapixel photo needs its float tensor only once


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
        fit_w, fit_h = (max(multiple_of, round(side / multiple_of) * multiple_of) for side in (w, h))  # nearest
        raise InputError(
            f"{name} is {w}x{h} pixels (width x height), not divisible by {multiple_of}; crop or resize it to a "
            f"multiple of {multiple_of}, e.g. {fit_w}x{fit_h}."
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
    """one image (3, H, W) or (1, 3, H, W) in [-1, 1] -> PIL RGB; one channel (1, H, W) or (H, W) -> PIL gray"""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"to_pil takes a tensor, not a {type(x).__name__}; convert it with images.to_tensor first.")
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise InputError(f"to_pil takes one image but got a batch of {x.shape[0]}; use grid(x) first.")
        x = x[0]
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise InputError(
            f"to_pil takes an image of shape (3, H, W) or (1, H, W), not {tuple(x.shape)}; show a latent's channels "
            "with viz (or one at a time, z[0, c:c + 1])."
        )
    if x.shape[0] == 1:
        return Image.fromarray(to_numpy(x.expand(3, -1, -1))[..., 0], mode="L")
    return Image.fromarray(to_numpy(x))


def load_image(path, size: int | tuple[int, int] | None = None, max_side: int | None = None) -> torch.Tensor:
    """image file -> (1, 3, H, W) in [-1, 1], upright as displayed; optionally shrunk and resized / cropped.

    Args:
        path: a PNG, JPEG, TIFF, ... file; EXIF orientation is applied, 16-bit and float images are scaled.
        size: resize the shorter side (an int) or cover (H, W) (a pair), then center-crop to size.
        max_side: first shrink so the longer side is at most this (aspect kept); a large file is decoded already
            reduced (JPEG at 1/2, 1/4 or 1/8 scale), so a 100-megapixel photo never exists as floats.
    """
    path = Path(path)
    with _open(path) as img:
        width, height = _displayed_size(img)
        shrunk = fit_within(width, height, max_side) if max_side is not None else (width, height)
        scale = shrunk[0] / width  # the first resize: to max_side, or else the one that size asks for
        if size is not None and shrunk == (width, height):
            scale = _short_side(size) / min(width, height)
        x = _decode(img, path, min(scale, 1.0))
    if (x.shape[-1] > x.shape[-2]) != (width > height) and width != height:
        shrunk = shrunk[::-1]  # a PNG whose EXIF orientation came after its pixels turned it while decoding
    if shrunk != (width, height):
        x = resize(x, (shrunk[1], shrunk[0]))
    if size is not None:
        x = center_crop(resize(x, _short_side(size)), size)
    return x


def _short_side(size: int | tuple[int, int]) -> int:
    """the shorter side a resize must reach before a center crop to size (an int, or (H, W) to cover)"""
    return size if isinstance(size, int) else max(_pair(size))


def image_size(path) -> tuple[int, int]:
    """an image file's (width, height) as displayed (EXIF orientation applied), read from its header only"""
    with _open(Path(path)) as img:
        return _displayed_size(img)


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) shrunk, aspect kept, so the longer side is at most max_side; unchanged if it already is"""
    if max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _open(path: Path) -> Image.Image:
    """Pillow's lazy open (the header only); InputError when there is no readable image at path"""
    if not path.exists():
        raise InputError(f"no image file at {path}; check the path.")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file; give the path of a PNG or JPEG file.")
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # _decode applies it to what is really decoded
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InputError(f"cannot read {path} as an image ({err.__class__.__name__}); use a PNG or JPEG file.") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height (90 or 270 degrees)


def _displayed_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of a lazily opened file as a viewer shows it, without decoding its pixels"""
    width, height = img.size
    if img.format == "PNG" and "exif" not in img.info:
        return width, height  # no EXIF before the pixels; Pillow's getexif would decode them all to look after
    return (height, width) if img.getexif().get(0x0112) in _TRANSPOSED else (width, height)  # 0x0112: Orientation


def _decode(img: Image.Image, path: Path, scale: float) -> torch.Tensor:
    """decode a lazily opened file, reduced when scale < 1 / REDUCING_GAP, after checking it fits -> (1, 3, H, W)"""
    width, height = img.size
    shown = "x".join(map(str, _displayed_size(img)))
    if scale * REDUCING_GAP < 1 and img.format == "JPEG":  # JPEG decodes at 1/2, 1/4, 1/8 scale for free
        img.draft(img.mode, (math.ceil(width * scale * REDUCING_GAP), math.ceil(height * scale * REDUCING_GAP)))
    pixels = img.size[0] * img.size[1]
    if Image.MAX_IMAGE_PIXELS and pixels > 2 * Image.MAX_IMAGE_PIXELS:  # where Pillow itself would refuse
        raise InputError(
            f"{path.name} is {shown} ({width * height / 1e6:.0f} megapixels), more than Pillow's limit of "
            f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} against decompression bombs; shrink the file first, or raise "
            "PIL.Image.MAX_IMAGE_PIXELS if you trust it."
        )
    factor = 1 if img.format == "JPEG" else max(1, int(1 / (scale * REDUCING_GAP)))  # Image.reduce's box size
    need = pixels * _bytes_per_pixel(img.mode) + pixels / factor**2 * (4 + TENSOR_BYTES_PER_PIXEL)  # 4: a converted copy
    free = available_memory("cpu")
    if need > 0.9 * free:
        raise InputError(
            f"{path.name} is {shown} ({width * height / 1e6:.0f} megapixels) and needs about {need / 1e9:.1f} GB "
            f"to load but {free / 1e9:.1f} GB is free; shrink it while loading (max_side, or reconstruct's "
            "--max-side) or shrink the file first."
        )
    try:
        img.load()
        if factor > 1:
            if img.mode not in _REDUCIBLE:
                img = img.convert("I" if img.mode.startswith("I;16") else "L" if img.mode == "1" else "RGBA")
            img = img.reduce(factor)  # box filter: each pixel the mean of factor x factor pixels
        return to_tensor(img)  # upright (EXIF), bit depth scaled
    except InputError:
        raise
    except (MemoryError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and "memory" not in str(err).lower():
            raise
        raise InputError(
            f"ran out of memory decoding {path.name} ({shown}); shrink it while loading (max_side, or "
            "reconstruct's --max-side) or close other programs."
        ) from None
    except (OSError, ValueError, SyntaxError) as err:  # truncated or corrupt image data
        raise InputError(f"cannot read {path} as an image ({err}); the file may be damaged.") from None


_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK", "YCbCr", "LAB", "HSV")  # modes Image.reduce works in


def _bytes_per_pixel(mode: str) -> int:
    """bytes Pillow stores per pixel (RGB is padded to 4)"""
    return 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize(x: torch.Tensor, size: int | tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """resize (B, C, H, W); an int sets the shorter side (aspect kept), a pair sets (H, W)"""
    size = int(size) if isinstance(size, np.integer) else size
    sizes = (size,) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else ()
    if len(sizes) not in (1, 2) or not all(isinstance(s, (int, np.integer)) and s > 0 for s in sizes):
        raise InputError(f"resize needs a positive whole number of pixels or a pair (H, W) of them, not {size!r}.")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise InputError(f"resize takes images (B, C, H, W); add a batch axis with x[None] (got {_shape(x)}).")
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


def grid(images: torch.Tensor | list[torch.Tensor], nrow: int | None = None, pad: int = 2) -> torch.Tensor:
    """(B, C, H, W), or a list of same-sized images, -> one (C, H', W') mosaic with nrow images per row, white padding"""
    if isinstance(images, (list, tuple)):
        if not images:
            raise InputError("grid got an empty list; give it at least one image.")
        if not all(isinstance(t, torch.Tensor) and t.ndim in (3, 4) for t in images):
            raise InputError("grid takes a list of image tensors, each (C, H, W) or (B, C, H, W).")
        if len({tuple(t.shape[-3:]) for t in images}) > 1:
            raise InputError("grid's images differ in size; resize them to one size first (images.resize).")
        images = torch.cat([t if t.ndim == 4 else t[None] for t in images])
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise InputError(f"grid takes a batch of images (B, C, H, W), not {_shape(images)}; for one image use x[None].")
    if images.shape[0] == 0:
        raise InputError("grid got an empty batch; give it at least one image.")
    if nrow is not None and (not isinstance(nrow, int) or nrow < 1):
        raise InputError(f"nrow must be a positive whole number of images per row, not {nrow!r}.")
    b, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / nrow)
    out = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad, dtype=images.dtype)
    for i, img in enumerate(images.detach().cpu()):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        out[:, top : top + h, left : left + w] = img
    return out


def _shape(x) -> str:
    """how a wrong argument looks, for an error message: a tensor's shape, or its type"""
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else f"a {type(x).__name__}"


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """peak signal-to-noise ratio in dB per image, for images in [-1, 1] (peak-to-peak 2): 10 log10(4 / MSE)"""
    if a.shape != b.shape:
        raise InputError(f"PSNR needs two images of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    a = a if a.ndim == 4 else a[None]
    b = b if b.ndim == 4 else b[None]
    mse = (a.float().clamp(-1, 1) - b.float().clamp(-1, 1)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))
