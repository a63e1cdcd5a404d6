"""Validation colour charts for choosing a VAE recipe (to choose a VAE recipe; the ColorChecker itself only reports): 4x6 patches of random
sRGB colours (seeds 100..103, uniform in the cube), read like chart.patch_errors. 

    .venv/bin/python tools/colour_validation.py latentlab/weights/vae.safetensors other.safetensors ...
"""
import sys, torch
from latentlab.evaluate import load_vae
from latentlab import chart
torch.set_num_threads(1)
def charts():
    for seed in range(100, 104):
        g = torch.Generator().manual_seed(seed)
        rgb = (torch.rand(24, 3, generator=g) * 255).round()
        img = (rgb / 127.5 - 1).reshape(4, 6, 3).permute(2, 0, 1).repeat_interleave(64, 1).repeat_interleave(64, 2)
        yield rgb, img[None].contiguous()
for path in sys.argv[1:]:
    vae = load_vae(path); errs = []
    with torch.no_grad():
        for rgb, img in charts():
            out = vae(img); out = out.sample if hasattr(out, "sample") else out
            errs.append((chart.patch_colours(out) - rgb).abs().max(1).values)
    e = torch.cat(errs)
    print(f"{path}: validation charts mean {e.mean():.2f} median {e.median():.2f} 90% {e.quantile(.9):.2f} worst {e.max():.2f} /255")
