"""A run's resume state: what `latentlab train ... --resume yes` needs to continue an interrupted run (issue 19).

Beside its checkpoint `<name>.safetensors` a run of `latentlab train` keeps `<name>.resume.safetensors`, rewritten at
every checkpoint, whole or not at all: the model's own weights (the checkpoint may hold their average instead), the
optimizer's moments, the learning-rate schedule's position, the weight average, the history so far, and the settings
a continuation must share. One file, so a kill at any moment leaves the previous state or the next, never a mix. The
run deletes it when it finishes. safetensors only: tensors as tensors, the rest as JSON text in its metadata, nothing
pickled (accelerate's own save_state pickles the optimizer, so train.fit does not use it). Lessons 02 and 08 train
through fit; this module serves the command line behind them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from latentlab.checkpoints import read_checkpoint, save_tensors
from latentlab.errors import InputError


def state_path(checkpoint: str | Path) -> Path:
    """vae.safetensors -> vae.resume.safetensors, beside it"""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.resume.safetensors")


def save_state(path: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, average,
               history: list[dict], run: dict) -> Path:
    """everything a continuation needs after `step` steps -> one safetensors file, written atomically"""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    saved = optimizer.state_dict()
    for index, values in saved["state"].items():  # AdamW: step, exp_avg, exp_avg_sq per parameter
        tensors.update({f"optimizer.{index}.{name}": v for name, v in values.items()})
    if average is not None:
        tensors.update({f"average.{i}": a for i, a in enumerate(average.average)})
    metadata = {"step": step, "run": run, "history": history, "optimizer_groups": saved["param_groups"],
                "schedule": scheduler.state_dict() if scheduler is not None else None,
                "average_updates": average.updates if average is not None else None}
    return save_tensors(path, tensors, metadata)


def saved_step(path: Path, run: dict) -> int:
    """the step a resume state was saved at; one sentence if there is none or it belongs to another run"""
    return int(_read(path, run)[1]["step"])


def load_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, average,
               run: dict) -> tuple[int, list[dict]]:
    """a resume state -> model, optimizer, schedule and average restored in place; returns (step, history)"""
    tensors, metadata = _read(path, run)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["optimizer_groups"])})
    if scheduler is not None:
        scheduler.load_state_dict(json.loads(metadata["schedule"]))
    if average is not None:
        if metadata["average_updates"] == "null":
            raise InputError(f"{path} was saved without a weight average; resume with the same --average as the run.")
        with torch.no_grad():
            for i, a in enumerate(average.average):
                a.copy_(tensors[f"average.{i}"])
        average.updates = int(metadata["average_updates"])
    return int(metadata["step"]), json.loads(metadata["history"])


def _read(path: Path, run: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """the state's tensors and metadata, after checking it exists and was saved by a run with these settings"""
    if not path.is_file():
        raise InputError(f"--resume found no resume state at {path} (a run keeps one from its first checkpoint until "
                         "it finishes); check --out, or start afresh without --resume.")
    tensors, metadata = read_checkpoint(path)
    if not {"step", "run", "history", "optimizer_groups"} <= metadata.keys():
        raise InputError(f"{path} is not a resume state written by `latentlab train`; start afresh without --resume.")
    saved, wanted = json.loads(metadata["run"]), json.loads(json.dumps(run))  # tuples as lists, as saved
    differ = [k for k in sorted(saved.keys() | wanted.keys()) if saved.get(k) != wanted.get(k)]
    if differ:
        k = differ[0]
        raise InputError(f"{path} was saved by a run with other settings ({k} {saved.get(k)!r} there, "
                         f"{wanted.get(k)!r} now); resume with that run's settings, or start afresh without --resume.")
    return tensors, metadata
