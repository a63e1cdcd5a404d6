"""One training run on one process or several: the `accelerate` Accelerator behind `latentlab train` (lessons 02, 08).

`python -m latentlab train ...` is one process; `accelerate launch --multi_gpu --num_processes N -m latentlab
train ...` or `torchrun --nproc-per-node N -m latentlab train ...` starts N copies of the same command, one per GPU
(or CPU process, over gloo). Each copy builds the same model from the same seed, trains on its own share of every
batch (data.batches), and PyTorch's DistributedDataParallel, set up by `Accelerator.prepare`, averages the gradients
before each step, so the weights stay equal everywhere. Only the main process (rank 0) writes files and shows
progress. The loop itself is train.fit: it calls `prepare`, `backward`, `is_main_process`, `gather` and
`wait_for_everyone`, and nothing else of accelerate (docs/training-at-scale.md).
"""

from __future__ import annotations

import hashlib
import os
from typing import Literal

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from latentlab.device import default_threads, set_threads

Precision = Literal["auto", "no", "bf16"]


def precision(device: torch.device, asked: Precision) -> Literal["no", "bf16"]:
    """the mixed precision a run uses: "auto" is bf16 on a CUDA GPU that has it, full float32 everywhere else"""
    if asked != "auto":
        return asked
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"


def accelerator_for(device: torch.device, mixed_precision: Precision = "auto", threads: int | None = None) -> Accelerator:
    """the run's Accelerator: one process as before, or this process's part of a launched group (rank, device)"""
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=precision(device, mixed_precision))
    if threads is None and accelerator.device.type == "cpu":  # N processes share the idle cores
        threads = max(1, default_threads() // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))  # set by the launchers
    set_threads(threads)  # after the Accelerator, which may set its own count
    return accelerator


def spread(accelerator: Accelerator) -> str:
    """", 2 processes (bf16)": how a run is spread, for its first line ("" for one process in float32)"""
    several = f", {accelerator.num_processes} processes" if accelerator.num_processes > 1 else ""
    return several + (f" ({accelerator.mixed_precision})" if accelerator.mixed_precision != "no" else "")


def weights_sha256(model: torch.nn.Module) -> str:
    """hex sha256 of a model's tensors (names and bytes, sorted): equal on every process when gradients are synced"""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


def record(accelerator: Accelerator, model: torch.nn.Module, first_items: list[int]) -> dict:
    """the manifest's "processes": world size, precision, and each process's first batch and final weights' sha256"""
    mine = {"rank": accelerator.process_index, "first_items": first_items, "weights_sha256": weights_sha256(model)}
    every = gather_object([mine]) if accelerator.num_processes > 1 else [mine]  # every process calls it
    return {"world_size": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision,
            "device": str(accelerator.device), "per_process": sorted(every, key=lambda p: p["rank"])}
