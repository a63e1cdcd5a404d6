"""Validation colour charts: how a VAE keeps colours it was not chosen on (issue 12; docs/vae-colour.md).

    .venv/bin/python tools/colour_validation.py latentlab/weights/vae.safetensors other.safetensors ...

Four charts in the ColorChecker's layout (4 x 6 patches of 64 x 64), each patch a colour drawn uniformly from the
sRGB cube (seeds 100-103), read like `chart.patch_errors`: the largest channel error of each patch's mean colour.
These charts choose between VAE recipes; the ColorChecker and the test photos only report. Printed beside them, the
other numbers that may choose: the validation photos (coffee, chelsea), the 26 GCompris photos held out for
validation (latentlab.gcompris: monuments among trees, animals in grass; from 2026-12-03 on) and the six greyscale
check photos, each against bicubic at the latent's number of values.
"""

import sys

import torch

from latentlab import chart, gcompris, images, photosets
from latentlab.baselines import bicubic_roundtrip, latent_values
from latentlab.evaluate import load_vae

SEEDS = range(100, 104)


def random_charts():
    """(sRGB 0..255 colours (24, 3), the chart (1, 3, 256, 384) in [-1, 1]) for each seed"""
    for seed in SEEDS:
        rgb = (torch.rand(24, 3, generator=torch.Generator().manual_seed(seed)) * 255).round()
        image = chart.from_srgb255(rgb).reshape(chart.ROWS, chart.COLUMNS, 3).permute(2, 0, 1)
        image = image.repeat_interleave(chart.PATCH, 1).repeat_interleave(chart.PATCH, 2)
        yield rgb, image[None].contiguous()


def main() -> int:
    torch.set_num_threads(1)
    photos = {split: photosets.split_images(split) for split in ("validation", "check")}
    photos["gcompris"] = gcompris.images("validation")  # 26 photos held out from GCompris' 106
    bicubic = {split: images.psnr(x, bicubic_roundtrip(x, latent_values(*x.shape[2:]))) for split, x in photos.items()}
    for path in sys.argv[1:]:
        vae, errors = load_vae(path), []
        with torch.no_grad():
            for rgb, image in random_charts():
                errors.append((chart.patch_colours(vae(image).clamp(-1, 1)) - rgb).abs().amax(1))
            db = {split: torch.cat([images.psnr(x[i:i + 8], vae(x[i:i + 8]).clamp(-1, 1)) for i in range(0, len(x), 8)])
                  for split, x in photos.items()}
        e = torch.cat(errors)
        print(f"{path}: validation charts mean {e.mean():.2f}, median {e.median():.2f}, 90th percentile "
              f"{e.quantile(0.9):.2f}, worst {e.max():.2f} (/255); validation photos "
              f"{' / '.join(f'{v:.2f}' for v in db['validation'].tolist())} dB, "
              f"{(db['validation'] - bicubic['validation']).mean():+.2f} over bicubic; greyscale check photos "
              f"{(db['check'] - bicubic['check']).mean():+.2f} over bicubic; GCompris validation photos "
              f"{(db['gcompris'] - bicubic['gcompris']).mean():+.3f} over bicubic (worst "
              f"{(db['gcompris'] - bicubic['gcompris']).min():+.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
