"""Training: one generic loop (progress bar, held-out checks, safetensors checkpoints, a safe Ctrl-C) and the VAE's loss.

The VAE minimises reconstruction + beta * KL, the negative evidence lower bound of Kingma & Welling 2014
(https://arxiv.org/abs/1312.6114, eq. 3) with beta weighting the KL as in Higgins et al. 2017 and in
Stable Diffusion's autoencoder (Rombach et al. 2022, kl_weight=1e-6). `fit` knows nothing about VAEs:
the UNet trains through it with its own loss function. Lessons 02, 03 and 08 call it; the training jobs behind
`latentlab train` live in vae_training (lessons 02-03) and denoiser_training (lesson 08). The same loop runs as one
of several processes (latentlab.parallel): it calls accelerate's `prepare`, `backward`, `gather` and
`wait_for_everyone` (one process without accelerate gets `OneProcess`, which does the same for one), and with a
resume state (latentlab.resume) it continues an interrupted run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from latentlab.checkpoints import save_checkpoint
from latentlab.errors import InputError
from latentlab.interrupts import held, note_interrupt, pressed, stop_on_ctrl_c, stopping
from latentlab.resume import load_state, save_state, state_path

# ---- the generic loop


def warmup_cosine(steps: int, warmup: int = 100, final: float = 0.1) -> Callable[[int], float]:
    """learning-rate multiplier: linear warm-up, then cosine decay to `final` (Loshchilov & Hutter 2017)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def budget_cosine(time_budget_s: float, warmup: int, final: float = 0.1) -> Callable[[int], float]:
    """like warmup_cosine, but the cosine follows the elapsed share of a wall-clock budget instead of the steps"""
    start = time.perf_counter()

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (time.perf_counter() - start) / time_budget_s)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


class WeightAverage:
    """An exponential moving average of a model's parameters (Polyak & Juditsky 1992), updated after each step.

    The average moves less from one step to the next than the weights themselves, so it is what gets evaluated,
    checkpointed and returned. `decay` 0.998 averages over roughly the last 500 steps; early on the average follows
    the weights more closely ((1 + n) / (10 + n) after n updates), so it never holds the random start for long.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise InputError(f"the weight-average decay must be between 0 and 1 (e.g. 0.998), not {decay}.")
        self.model, self.decay, self.updates = model, decay, 0
        self.average = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in zip(self.average, self.model.parameters()):
            avg.lerp_(p.detach(), 1 - decay)

    @contextmanager
    def applied(self):
        """inside the block the model holds the averaged weights; its own come back afterwards"""
        own = [p.detach().clone() for p in self.model.parameters()]
        self.copy_to_model()
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for p, w in zip(self.model.parameters(), own):
                    p.copy_(w)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for p, avg in zip(self.model.parameters(), self.average):
            p.copy_(avg)


class OneProcess:
    """the few Accelerator calls fit makes, for one process without accelerate (the lessons, and the tests)"""

    is_main_process, num_processes, process_index = True, 1, 0

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)

    def prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        return model.to(self.device), optimizer

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def wait_for_everyone(self) -> None:
        pass


class TrainingStep(nn.Module):
    """the model and its loss as one module: what DistributedDataParallel wraps, since it syncs through forward"""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, torch.Tensor], dict[str, torch.Tensor]]):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss_fn(self.model, batch)


def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], dict[str, torch.Tensor]],
    batches: Iterator[torch.Tensor | tuple[torch.Tensor, ...]],
    steps: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_every: int = 250,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 500,
    metadata: Callable[[], dict] | None = None,
    device: torch.device | str = "cpu",
    desc: str = "train",
    time_budget_s: float | None = None,
    average: float | None = None,
    accelerator=None,
    resumable: dict | None = None,
    resume: bool = False,
) -> list[dict]:
    """Run `steps` optimizer steps of loss_fn(model, batch)["loss"]; returns the history, one dict per step.

    Args:
        loss_fn: returns a dict of scalar tensors with at least "loss"; every entry goes into the history.
        batches: an endless iterator of batches, each a tensor or a tuple of them (e.g. images and labels), moved
            to `device` here.
        evaluate: called every `eval_every` steps and at the end, in eval mode and without gradients; its
            numbers are added to that step's history entry.
        checkpoint: where `save_checkpoint` writes every `checkpoint_every` steps and at the end.
        metadata: called at each save for the metadata to store (the step is added).
        time_budget_s: stop after the step that reaches this many seconds (then `steps` is only an upper bound);
            for comparisons at equal wall-clock time.
        average: with a decay (e.g. 0.998), a WeightAverage of the weights is what is evaluated, checkpointed and
            left in the model at the end.
        accelerator: an `accelerate.Accelerator` (latentlab.parallel) to train as one of several processes; its
            device replaces `device`. Only the main process evaluates, shows progress and writes files.
        resumable: the settings a continuation must share; with them, a resume state (latentlab.resume) is written
            beside the checkpoint at each save and deleted at the end.
        resume: continue from that resume state (the caller starts `batches` at its step).
    Ctrl-C (KeyboardInterrupt) stops the loop, saves the checkpoint (a second Ctrl-C waits until it is written
    whole), and returns the history so far with "interrupted": True in its last entry: the model is usable.
    Several processes stop together: each holds its Ctrl-C until the end of the step, then they agree.
    """
    accelerator = accelerator or OneProcess(device)
    device, main, several = accelerator.device, accelerator.is_main_process, accelerator.num_processes > 1
    step_fn, optimizer_ = accelerator.prepare(TrainingStep(model, loss_fn), optimizer)  # DDP with several processes
    averaged = WeightAverage(model, average) if average is not None else None
    state = state_path(checkpoint) if checkpoint is not None and resumable is not None else None
    history: list[dict] = []
    if resume:  # every process reads the same state, so their weights stay equal
        _, history = load_state(state, model, optimizer, scheduler, averaged, resumable)
    start = time.perf_counter() - (history[-1]["time_s"] if history else 0.0)

    def judged():  # the weights that are evaluated and saved: the average, while training with one
        return averaged.applied() if averaged is not None else nullcontext()

    def save(step: int) -> None:
        if checkpoint is None or not main:
            return
        if state is not None and step < steps:  # the model's own weights, before the average is swapped in
            save_state(state, step, model, optimizer, scheduler, averaged, history, resumable)
        with judged():
            save_checkpoint(checkpoint, model, {**(metadata() if metadata else {}), "step": step})

    def check(entry: dict) -> None:
        if evaluate is None or not main:
            return
        model.eval()
        with torch.no_grad(), judged():
            entry.update(evaluate(model))
        model.train()
        bar.write(f"step {entry['step']}: " + ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "step"))

    def agreed(*flags: bool) -> list[bool]:  # several processes: a flag raised by any one holds for all
        if not several:
            return list(flags)
        raised = accelerator.gather(torch.tensor([flags], dtype=torch.int32, device=device))  # (processes, flags)
        return raised.amax(0).bool().tolist()

    model.train()
    bar = tqdm(total=steps, initial=len(history), desc=desc, mininterval=2.0, dynamic_ncols=True, disable=not main)
    with stop_on_ctrl_c():  # the first Ctrl-C stops the loop; later ones wait for the checkpoint
        try:
            with held() if several else nullcontext():  # several: Ctrl-C is held to the step's end, then agreed
                for step in range(len(history) + 1, steps + 1):
                    batch = next(batches)
                    batch = tuple(b.to(device) for b in batch) if isinstance(batch, tuple) else batch.to(device)
                    logs = step_fn(batch)
                    optimizer_.zero_grad(set_to_none=True)
                    accelerator.backward(logs["loss"])  # several processes: gradients averaged over all of them
                    optimizer_.step()
                    if scheduler is not None:
                        scheduler.step()
                    if averaged is not None:
                        averaged.update()
                    entry = {"step": step, **{k: float(v.detach()) for k, v in logs.items()},
                             "time_s": time.perf_counter() - start}
                    history.append(entry)
                    bar.update(1)
                    bar.set_postfix(loss=f"{entry['loss']:.4f}", refresh=False)
                    out_of_time = time_budget_s is not None and entry["time_s"] >= time_budget_s
                    out_of_time, stop = agreed(out_of_time, several and pressed())
                    if stop:
                        raise KeyboardInterrupt
                    if step % eval_every == 0 or step == steps or out_of_time:
                        check(entry)
                    if out_of_time:
                        break
                    if step % checkpoint_every == 0 and step < steps:
                        save(step)  # a Ctrl-C during the save waited for its files (held); it stops the run here
                        if stopping() and not several:
                            raise KeyboardInterrupt
        except KeyboardInterrupt:
            note_interrupt()
            if history:
                history[-1]["interrupted"] = True
            if main:
                bar.write(f"interrupted after {len(history)} steps; saving what was learned so far.")
        finally:
            bar.close()
        with held():  # a Ctrl-C from here on waits until the checkpoint is written whole
            interrupted = bool(history and history[-1].get("interrupted"))
            if interrupted:
                save(len(history))  # the resume state too, for --resume
            if averaged is not None:
                averaged.copy_to_model()  # the model now holds the average for good
                averaged = None
            model.eval()
            if not interrupted:
                save(len(history))
                if state is not None and main:
                    state.unlink(missing_ok=True)  # finished: nothing to resume
            accelerator.wait_for_everyone()  # the files are whole before any process moves on
        if stopping() and history:
            history[-1]["interrupted"] = True
    return history


# ---- the VAE's loss


def vae_loss(
    model: nn.Module,
    batch: torch.Tensor,
    beta: float = 1e-5,
    reconstruction: Literal["l1", "mse"] = "mse",
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """images (B, 3, H, W) -> {"loss": rec + beta * kl, "rec", "kl"}; kl is per image value, like SD's kl_weight."""
    posterior = model.encode(batch)
    recon = model.decode(posterior.sample(generator))  # reparameterized sample: gradients reach mean and logvar
    error = recon - batch
    rec = error.abs().mean() if reconstruction == "l1" else error.pow(2).mean()
    kl = posterior.kl().mean() / batch[0].numel()  # nats per image value (3 H W of them)
    return {"loss": rec + beta * kl, "rec": rec, "kl": kl}
