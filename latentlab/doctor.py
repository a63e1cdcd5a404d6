"""Check the learner's setup: versions, device, threads, memory, quick mode, course weights, network."""

import argparse
import importlib.metadata
import json
import os
import platform
import socket
import sys
import threading
from pathlib import Path

HUB_HOST = "huggingface.co"
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


def hub_reachable(timeout: float = 2.0) -> tuple[bool, str]:
    """(reachable, why): a TCP connect to the hub, given up after `timeout` seconds even if DNS hangs"""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False, "HF_HUB_OFFLINE is set, so the model hub is not used"
    result: list = []

    def attempt() -> None:
        try:
            socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
            result.append((True, f"{HUB_HOST} answered"))
        except OSError as err:
            result.append((False, f"{HUB_HOST} cannot be reached ({err.__class__.__name__})"))

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return result[0] if result else (False, f"{HUB_HOST} did not answer within {timeout:.0f} s")


def sd_weights_cached() -> bool:
    """whether Stable Diffusion's VAE (primary or mirror, from latentlab.pretrained.SD_MODELS) is in the local HF cache"""
    from latentlab.pretrained import SD_MODELS

    cache = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    return any((cache.expanduser() / f"models--{s.repo_id.replace('/', '--')}").exists()
               for s in SD_MODELS["sd-vae"].sources)


def course_weights() -> dict[str, bool]:
    """which shipped weight files are present in the installed package"""
    folder = Path(__file__).parent / "weights"
    return {p.stem: True for p in sorted(folder.glob("*.safetensors"))}


def report(timeout: float = 2.0) -> dict:
    """everything doctor checks, as a dict"""
    import psutil
    import torch

    from latentlab import device, mode

    dev = device.pick_device()
    hub_ok, hub_why = hub_reachable(timeout)
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
        "course_weights": sorted(course_weights()),
        "hub_reachable": hub_ok,
        "hub": hub_why,
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
    print(f"  weights      {', '.join(info['course_weights']) or 'none shipped yet'}")
    print(f"  model hub    {'reachable' if info['hub_reachable'] else 'not reachable'}: {info['hub']}")
    sd = "in the local cache" if info["sd_vae_cached"] else "not cached"
    print(f"  SD VAE       {sd}{'' if info['hub_reachable'] or info['sd_vae_cached'] else ' (lesson 09 will use the course VAE)'}")
    missing = [name for name, version in v.items() if version is None and name != "jupyterlab"]
    if missing:
        print(f"  missing: {', '.join(missing)}; run the README's setup command.", file=sys.stderr)
        return 1
    return 0
