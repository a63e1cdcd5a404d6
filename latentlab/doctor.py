"""Check the learner's setup (lesson 00, `latentlab doctor`): versions, device, memory, quick mode, weights, network.

The shipped weights are verified against their manifests' sha256 (checkpoints.verify; lesson 10's compression sweep
with sweep.missing), and the model hub is asked
the way lesson 09 asks it (sd.hub_unreachable: HF_ENDPOINT, proxies, HF_HUB_OFFLINE).
"""

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

import psutil
import torch
from huggingface_hub import constants as hub_constants

from latentlab import checkpoints, device, mode, sd, sweep

PACKAGES = ("latentlab", "torch", "diffusers", "safetensors", "numpy", "matplotlib", "ipywidgets", "jupyterlab")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the model hub")


def versions() -> dict[str, str | None]:
    """installed version of each package the course uses (None when missing)"""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def sd_weights_cached() -> bool:
    """whether Stable Diffusion's VAE (primary or mirror, from sd.SD_MODELS) is in the local Hugging Face cache"""
    cache = Path(hub_constants.HF_HUB_CACHE).expanduser()
    return any((cache / f"models--{s.repo_id.replace('/', '--')}").exists() for s in sd.SD_MODELS["sd-vae"].sources)


def report(timeout: float = 2.0) -> dict:
    """everything doctor checks, as a dict"""
    dev = device.pick_device()
    hub_problem = sd.hub_unreachable(timeout)
    weights = checkpoints.verify()  # each shipped file's sha256 against its manifest
    mem = psutil.virtual_memory()
    return {
        "versions": versions(),
        "platform": platform.platform(),
        "device": device.describe(dev),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "memory_total_gb": round(mem.total / 2**30, 1),
        "memory_available_gb": round(mem.available / 2**30, 1),
        "quick_mode": mode.quick(),
        "course_weights": [name for name, problem in weights.items() if problem is None],  # verified
        "weights_problems": {name: problem for name, problem in weights.items() if problem is not None},
        "sweep_problem": sweep.missing(),  # None: all twelve files of lesson 10's sweep match their manifests
        "hub_reachable": hub_problem is None,
        "hub": hub_problem or f"{hub_constants.ENDPOINT} answered",
        "sd_vae_cached": sd_weights_cached(),
    }


def run(args: argparse.Namespace) -> int:
    info = report(args.timeout)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    v = info["versions"]
    print("latentlab doctor")
    for name, version in v.items():
        print(f"  {name:<12} {version or 'MISSING'}")
    print(f"  device       {info['device']}")
    print(f"  memory       {info['memory_available_gb']} GB free of {info['memory_total_gb']} GB")
    print(f"  quick mode   {'on' if info['quick_mode'] else 'off'}")
    print(f"  weights      {', '.join(info['course_weights']) or 'none verified'} (sha256 checked)")
    for problem in info["weights_problems"].values():
        print(f"  weights      {problem}", file=sys.stderr)
    if info["sweep_problem"] is None:
        print(f"  sweep        {2 * len(sweep.GEOMETRIES)} files of lesson 10's compression sweep (sha256 checked)")
    else:
        print(f"  sweep        {info['sweep_problem']}", file=sys.stderr)
    print(f"  model hub    {'reachable' if info['hub_reachable'] else 'not reachable'}: {info['hub']}")
    cached = "in the local cache" if info["sd_vae_cached"] else "not cached"
    print(f"  SD VAE       {cached}{'' if info['hub_reachable'] or info['sd_vae_cached'] else ' (lesson 09 will use the course VAE)'}")
    missing = [name for name, version in v.items() if version is None and name != "jupyterlab"]
    if missing:
        print(f"  missing: {', '.join(missing)}; run the README's setup command.", file=sys.stderr)
    return 1 if missing or info["weights_problems"] or info["sweep_problem"] else 0
