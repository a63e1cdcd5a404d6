"""Slider latency: one move of a latent-channel slider -> the decoded 256x256 image ready to show, on this CPU.

    .venv/bin/python tools/bench_slider.py                   # 1 and 2 threads, 256x256 (latent 4x32x32)
    .venv/bin/python tools/bench_slider.py --threads 2 --channels-last

One "move" is what the lesson 04 slider does: scale and shift one channel of the latent, decode with the course
VAE, clamp, and convert to uint8 pixels. Timed with latentlab.bench.time_fn (warm-up, median, spread). The
target is a median under 100 ms. Other processes share the CPU, so the load average is printed with the numbers.
"""

import argparse
import json
import os
import sys

import torch

from latentlab.bench import time_fn
from latentlab.data import load_photo
from latentlab.device import set_threads
from latentlab.images import to_numpy
from latentlab.pretrained import load_course_vae

TARGET_MS = 100.0


def slider_move(vae, z: torch.Tensor, channel: int, gain: float, offset: float):
    """latent (1, 4, h, w) with one channel scaled and shifted -> uint8 image (H, W, 3)"""
    z = z.clone()
    z[:, channel] = z[:, channel] * gain + offset
    return to_numpy(vae.decode(z).clamp(-1, 1)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side (latent side = size / 8)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts to try")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--channels-last", action="store_true", help="run the decoder in channels_last layout")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    vae = load_course_vae("cpu")
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    vae = vae.to(memory_format=layout)
    with torch.no_grad():
        z = vae.encode(load_photo("chelsea", args.size)).mode().contiguous(memory_format=layout)  # (1, 4, s/8, s/8)
    moves = iter(range(10**9))  # each call moves the slider to a new value, like a learner dragging it

    def move():
        i = next(moves)
        return slider_move(vae, z, channel=i % 4, gain=1 + 0.1 * (i % 7), offset=0.05 * (i % 5))

    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        set_threads(threads)
        load_before = os.getloadavg()[0]
        timing = time_fn(move, warmup=3, repeats=args.repeats, device="cpu")
        results.append({**timing.as_dict(), "threads": threads, "size": args.size, "latent": list(z.shape),
                        "channels_last": args.channels_last, "load_avg_1min": [load_before, os.getloadavg()[0]],
                        "cpus": os.cpu_count(), "target_met": timing.median_ms < TARGET_MS})
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(f"{r['size']}x{r['size']} (latent {tuple(r['latent'])}), {r['threads']} thread(s)"
                  f"{', channels_last' if r['channels_last'] else ''}: median {r['median_ms']:.1f} ms, IQR "
                  f"{r['iqr_ms']:.1f}, min {r['min_ms']:.1f}, max {r['max_ms']:.1f} (n={r['repeats']}); "
                  f"load average {r['load_avg_1min'][0]:.1f} -> {r['load_avg_1min'][1]:.1f} on {r['cpus']} CPUs; "
                  f"target < {TARGET_MS:g} ms: {'met' if r['target_met'] else 'MISSED'}")
    return 0 if any(r["target_met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
