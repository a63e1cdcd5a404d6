"""Slider latency: one move of a latent-channel slider -> the decoded 256x256 image ready to show, on this CPU.

    .venv/bin/python tools/bench_slider.py                   # the lessons' thread policy, 1 and 2 threads, 256x256
    .venv/bin/python tools/bench_slider.py --threads auto --channels-last
    .venv/bin/python tools/bench_slider.py --threads auto --contend 2   # while another PyTorch process computes
    .venv/bin/python tools/bench_slider.py --threads auto --quota 1     # as in a container allowed one CPU

One "move" is exactly what the lesson 04 slider app does on each change: `latentlab.widgets.render_channels`
(edit one channel's gain and offset, decode under inference mode, clamp, convert to uint8 pixels) and
`png_bytes` (the PNG the browser is sent). Lesson 04 decodes a move with the tiny decoder at full resolution
(the learner's own, distilled in the lesson; here the shipped one, or an untrained one of the same architecture
before one ships, which takes the same time) and redraws with the full course VAE once the
slider rests; both are timed ("preview" and "full"). Timed with latentlab.bench.time_fn (warm-up, median, spread).
The target (issue 17): a full-resolution preview median under 50 ms at 256x256 on one thread.
Other processes share the CPU, so the load average is printed with the numbers; "auto" threads is the lessons'
own policy (`device.set_threads()`: the affinity mask, a container's CPU quota and the load). `--contend N` starts
another PyTorch process multiplying matrices on N threads (as a notebook training beside the slider would) and waits
until the load average shows it before timing; `--quota C` makes the policy read a cgroup v2 `cpu.max` of C CPUs
(a container's quota, simulated; the machine's cores are not actually limited).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from latentlab import device
from latentlab.bench import time_fn
from latentlab.checkpoints import load_course_vae, load_tiny_decoder, shipped
from latentlab.data import load_photo
from latentlab.device import set_threads
from latentlab.tiny_decoder import TinyDecoder
from latentlab.widgets import png_bytes, render_channels

TARGET_MS = 50.0


def slider_move(vae, z: torch.Tensor, channel: int, gain: float, offset: float) -> bytes:
    """latent (1, C, h, w) with one channel scaled and shifted -> the PNG the app shows, by the app's own code"""
    gains, offsets = [1.0] * z.shape[1], [0.0] * z.shape[1]
    gains[channel], offsets[channel] = gain, offset
    return png_bytes(render_channels(vae, z, gains, offsets))


CONTENDER = "import sys, torch; torch.set_num_threads(int(sys.argv[1])); a = torch.randn(1024, 1024)\nwhile True: a @ a"


@contextmanager
def contention(threads: int, settle_s: float = 90.0):
    """another process computing on `threads` threads for the duration; waits until the load average shows it"""
    if not threads:
        yield
        return
    other = subprocess.Popen([sys.executable, "-c", CONTENDER, str(threads)])
    try:
        start = time.time()
        while os.getloadavg()[0] < threads - 0.5 and time.time() - start < settle_s:  # the policy reads the load
            time.sleep(2)
        yield
    finally:
        other.kill()
        other.wait()


@contextmanager
def simulated_quota(cpus: float | None):
    """the lessons' policy sees a cgroup v2 quota of `cpus` CPUs (device.CGROUP_ROOT pointed at a fake cpu.max)"""
    if cpus is None:
        yield
        return
    saved = device.CGROUP_ROOT
    with tempfile.TemporaryDirectory() as root:
        Path(root, "cpu.max").write_text(f"{round(cpus * 100_000)} 100000\n")
        device.CGROUP_ROOT = Path(root)
        try:
            yield
        finally:
            device.CGROUP_ROOT = saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side (latent side = size / 8)")
    parser.add_argument("--threads", default="auto,1,2",
                        help="comma-separated thread counts to try; auto: the lessons' policy (device.set_threads())")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--channels-last", action="store_true", help="run the decoder in channels_last layout")
    parser.add_argument("--contend", type=int, default=0, metavar="N",
                        help="time while another PyTorch process computes on N threads")
    parser.add_argument("--quota", type=float, default=None, metavar="CPUS",
                        help="simulate a container's CPU quota of this many CPUs for the 'auto' policy")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with contention(args.contend), simulated_quota(args.quota):
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    """time slider moves for each thread choice; prints (or --json) the results; 0 if the 1-thread preview is fast"""

    vae = load_course_vae("cpu")
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    vae = vae.to(memory_format=layout)
    # the time of a decode does not depend on the weights: before a tiny decoder ships, an untrained one is timed
    tiny = (load_tiny_decoder("cpu") if "tiny_decoder" in shipped() else TinyDecoder().eval()).to(memory_format=layout)
    with torch.no_grad():
        z = vae.encode(load_photo("chelsea", args.size)).mode().contiguous(memory_format=layout)  # (1, 4, s/8, s/8)
    moves = iter(range(10**9))  # each call moves the slider to a new value, like a learner dragging it

    def move(decoder):
        i = next(moves)
        return slider_move(decoder, z, channel=i % 4, gain=1 + 0.1 * (i % 7), offset=0.05 * (i % 5))

    results = []
    for choice in args.threads.split(","):
        threads = set_threads(None if choice == "auto" else int(choice))
        for kind, decoder in [("preview", tiny), ("full", vae)]:
            load_before = os.getloadavg()[0]
            timing = time_fn(lambda decoder=decoder: move(decoder), warmup=3, repeats=args.repeats, device="cpu")
            results.append({**timing.as_dict(), "decode": kind, "threads": threads, "size": args.size,
                            "policy": choice == "auto", "latent": list(z.shape), "channels_last": args.channels_last,
                            "contending_threads": args.contend, "simulated_quota": args.quota,
                            "load_avg_1min": [load_before, os.getloadavg()[0]], "cpus": os.cpu_count(),
                            "target_met": timing.median_ms < TARGET_MS})
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            policy = " (the lessons' policy)" if r["policy"] else ""
            policy += f", beside {args.contend} busy threads" if args.contend else ""
            policy += f", quota {args.quota:g} CPU" if args.quota is not None else ""
            print(f"{r['decode']:>7}: {r['size']}x{r['size']} (latent {tuple(r['latent'])}), {r['threads']} thread(s)"
                  f"{policy}"
                  f"{', channels_last' if r['channels_last'] else ''}: median {r['median_ms']:.1f} ms, IQR "
                  f"{r['iqr_ms']:.1f}, min {r['min_ms']:.1f}, max {r['max_ms']:.1f} (n={r['repeats']}); "
                  f"load average {r['load_avg_1min'][0]:.1f} -> {r['load_avg_1min'][1]:.1f} on {r['cpus']} CPUs; "
                  f"target < {TARGET_MS:g} ms: {'met' if r['target_met'] else 'MISSED'}")
    return 0 if any(r["target_met"] for r in results if r["decode"] == "preview" and r["threads"] == 1) else 1


if __name__ == "__main__":
    sys.exit(main())
