"""The course's own weights: safetensors checkpoints (written atomically), manifests, and the shipped-model loaders.

Lessons 02-05 and 09 load the course VAE, lesson 08 the denoisers and the VAE they were trained on; the tools load the
tiny preview decoder once one ships (the lessons distil their own); `latentlab train` writes its checkpoints and
manifests through this module, and `latentlab doctor` verifies the shipped files.

Each shipped model is `weights/<name>.safetensors` (safetensors only, never pickle) beside `weights/<name>.json`,
its manifest. Every manifest has these keys (MANIFEST_KEYS):

    name         the model's name, the file stem ("vae", "denoiser_vae", "denoiser", "denoiser_pixel", "tiny_decoder")
    command      the `latentlab train ...` command line of the run that wrote the weights
    seed, data   the run's seed, and the data it trained on, in words
    steps        steps asked for (`steps_done` says how many ran when a time budget or Ctrl-C ended the run)
    wall_time_s  the run's wall-clock time in seconds
    config       the model's config as a dict: VAEConfig(**config) or UNetConfig(**config) rebuilds the network
    sha256       hex sha256 of the weights file; a file that differs is reported as corrupt

and, where they apply: `steps_done`, `interrupted`, `device`, `torch`, `final` (last losses), `history` (the
logged steps), `note` (anything a reader must know, in words), `base` (the record of the run this one started from
with `--init`: its `file`, `sha256`, `command`, ... and its own `base`; see training_stages), `heldout` (the VAE's
held-out PSNRs beside bicubic and PCA); for a denoiser `space` ("latent" or "pixel"), `vae` (the manifest name of
the VAE whose latents it learned, null in pixel space), `beta_schedule`, `prediction_type`, `time_budget_s`,
`ms_per_step_median`, `parameters`, `quality`; for a fine-tuned VAE `made_by`, `base_vae_sha256`, `base_note`,
`heldout_shapes`, `heldout_photos_psnr`; for the tiny decoder `teacher` (the `file`, `sha256` and `command` of the
VAE whose decoder it imitates), `parameters`, `measured` (speed and quality, tools/eval_tiny_decoder.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from latentlab.device import pick_device
from latentlab.errors import InputError
from latentlab.interrupts import held
from latentlab.tiny_decoder import TinyDecoder, TinyDecoderConfig
from latentlab.unet import UNet, UNetConfig
from latentlab.vae import VAE, VAEConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST_KEYS = ("name", "command", "seed", "data", "steps", "wall_time_s", "config", "sha256")


# ---- files: written whole or not at all


def _write_atomically(path: Path, write: Callable[[str], None]) -> Path:
    """write(temp path) in path's folder, make it readable like any shipped file (0644), then os.replace onto path;
    inside `latentlab train` a Ctrl-C waits until this is done (no temp file is left behind), then stops the run"""
    path.parent.mkdir(parents=True, exist_ok=True)
    with held():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes it private (0600)
            os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return path


def save_checkpoint(path: str | Path, model: nn.Module, metadata: dict | None = None) -> Path:
    """model weights (+ metadata, stored as strings) -> safetensors file, atomically: temp file, then os.replace."""
    return save_tensors(path, model.state_dict(), metadata)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> Path:
    """named tensors (+ metadata, stored as strings) -> safetensors file, atomically: temp file, then os.replace."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    return _write_atomically(Path(path), lambda tmp: save_file(tensors, tmp, metadata=text))


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors file -> (tensors, metadata); InputError if the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}; check the path or train one with `latentlab train`.")
    try:
        tensors = load_file(path)
        with open(path, "rb") as f:  # the header: 8-byte length, then JSON with "__metadata__"
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(
            f"{path} is not a readable safetensors checkpoint ({str(err).splitlines()[0][:80]}); it may be truncated "
            "or corrupt: delete it and retrain or reinstall."
        ) from None
    return tensors, header.get("__metadata__", {})


def load_checkpoint(path: str | Path, model: nn.Module) -> dict[str, str]:
    """safetensors file -> weights loaded into model (strict); returns the metadata. InputError says what mismatched."""
    tensors, metadata = read_checkpoint(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in tensors and tensors[k].shape != v.shape]
    problems = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                f"{len(wrong)} with another shape (e.g. {wrong[0]}, file vs model)" if wrong else ""]
    problems = [p for p in problems if p]
    if problems:
        raise InputError(
            f"{path} does not fit this {type(model).__name__}: keys {'; '.join(problems)}; build the model with the "
            "config the checkpoint was trained with."
        )
    model.load_state_dict(tensors, strict=True)
    return metadata


def sha256_file(path: str | Path) -> str:
    """hex sha256 of a file's bytes"""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(path: str | Path, manifest: dict) -> Path:
    """manifest dict -> JSON file (mode 0644), atomically: temp file in the same folder, then os.replace"""
    text = json.dumps(manifest, indent=2) + "\n"
    return _write_atomically(Path(path), lambda tmp: Path(tmp).write_text(text))


# ---- the shipped models


def shipped() -> list[str]:
    """names of the models in weights/ (a manifest or a weights file is enough to be listed)"""
    return sorted({p.stem for p in WEIGHTS_DIR.glob("*.json")} | {p.stem for p in WEIGHTS_DIR.glob("*.safetensors")})


def course_manifest(name: str = "vae") -> dict:
    """the manifest of a shipped course model, e.g. course_manifest("vae")["command"]"""
    path = WEIGHTS_DIR / f"{name}.json"
    if not isinstance(name, str) or not path.is_file():
        raise InputError(f"no shipped model named {name!r}; shipped: {', '.join(shipped()) or 'none'}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise InputError(f"the manifest {path} is not valid JSON; {_remedy()}.") from None


def training_stages(manifest: dict) -> list[dict]:
    """the runs that made a model, first to last: a manifest whose run started from a checkpoint (`--init`) keeps
    the earlier run's record under "base", and so on back to the run from random weights.

    Each stage: its `command` as recorded, `name` ("run 1", ...), the `sha256` of the weights it made (None where the
    record has none), and `settings`, the command as a reader needs it: `--init` names the run it started from instead
    of a file on the machine that trained it, `--out` is left out.
    """
    stages = []
    while manifest:
        stages.append({k: manifest.get(k) for k in ("command", "steps_done", "wall_time_s", "device", "sha256")})
        manifest = manifest.get("base")
    stages = stages[::-1]
    for i, stage in enumerate(stages, 1):
        stage["name"] = f"run {i}"
        settings = re.sub(r"\s--out\s+\S+", "", stage["command"] or "")
        if i > 1:  # the first run's --init, if any, names weights from outside the chain: it stays as recorded
            settings = re.sub(r"--init\s+\S+", f"--init <the weights of run {i - 1}>", settings)
        stage["settings"] = settings
        if stage["device"]:  # older records wrote "cpu (1 threads)"
            stage["device"] = re.sub(r"\b1 threads\b", "1 thread", stage["device"])
    return stages


def _remedy(manifest: dict | None = None) -> str:
    """the way back to good weights: a training command alone may be one stage of a chain, so never that"""
    recipe = (manifest or {}).get("recipe")
    where = f"its recipe is {recipe}" if recipe else "the recipes are in recipes/"
    return f"reinstall latentlab, or rebuild it with `make weights` in a clone of the repository ({where})"


def checked_file(path: Path, manifest: dict, what: str, remedy: str) -> Path:
    """`path` when it exists and its sha256 is the manifest's; else an InputError naming `what` and the `remedy`"""
    if not path.is_file():
        raise InputError(f"{what} weights are missing ({path}); {remedy}.")
    if sha256_file(path) != manifest.get("sha256"):
        raise InputError(f"{what} weights at {path} are corrupt (sha256 differs from the manifest); {remedy}.")
    return path


def course_weights(name: str = "vae") -> tuple[Path, dict]:
    """(path of the verified weights file, manifest); InputError if the file is missing or its sha256 differs"""
    manifest = course_manifest(name)
    return checked_file(WEIGHTS_DIR / f"{name}.safetensors", manifest, f"the course {name}", _remedy(manifest)), manifest


def verify() -> dict[str, str | None]:
    """each shipped model -> None when its file matches its manifest's sha256, else one sentence saying what is wrong"""
    found: dict[str, str | None] = {}
    for name in shipped():
        try:
            course_weights(name)
            found[name] = None
        except InputError as err:
            found[name] = str(err)
    return found


def _load_vae(name: str, device) -> VAE:
    path, manifest = course_weights(name)
    vae = VAE(VAEConfig(**manifest["config"]))
    load_checkpoint(path, vae)
    return vae.to(pick_device(device)).eval()


def load_course_vae(device: torch.device | str | None = None) -> VAE:
    """the course VAE (factor 8, 4 latent channels) with its shipped weights, in eval mode"""
    return _load_vae("vae", device)


def load_tiny_decoder(device: torch.device | str | None = None) -> TinyDecoder:
    """the tiny preview decoder distilled from the course VAE's decoder (same raw latents in), in eval mode"""
    path, manifest = course_weights("tiny_decoder")
    model = TinyDecoder(TinyDecoderConfig(**manifest["config"]))
    load_checkpoint(path, model)
    return model.to(pick_device(device)).eval()


def _denoisers() -> list[str]:
    return [n for n in shipped() if (WEIGHTS_DIR / f"{n}.json").is_file() and "space" in course_manifest(n)]


def load_course_denoiser(name: str = "denoiser", device: torch.device | str | None = None) -> UNet:
    """a shipped lesson-08 denoiser UNet in eval mode ("denoiser": latent space, "denoiser_pixel": pixels).

    Its manifest (`course_manifest(name)`) says how to sample it: `beta_schedule`, `prediction_type`, `space`.
    """
    manifest = course_manifest(name)
    if "space" not in manifest:
        raise InputError(f"{name!r} is not a denoiser; choose one of {', '.join(_denoisers())}, or load a VAE with "
                         "load_course_vae().")
    path, manifest = course_weights(name)
    model = UNet(UNetConfig(**manifest["config"]))
    load_checkpoint(path, model)
    return model.to(pick_device(device)).eval()


def load_denoiser_vae(name: str = "denoiser", device: torch.device | str | None = None) -> VAE:
    """the VAE whose latents a shipped latent denoiser was trained on: the course VAE, or its copy adapted to shapes"""
    manifest = course_manifest(name)
    if "space" not in manifest:
        raise InputError(f"{name!r} is not a denoiser, so it has no VAE of its own; pass a latent denoiser's name "
                         f"({', '.join(n for n in _denoisers() if course_manifest(n).get('vae'))}).")
    if not manifest.get("vae"):
        raise InputError(f"{name} is a pixel-space denoiser and has no VAE; sample it directly in pixels.")
    return _load_vae(manifest["vae"], device)


def check_finite(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """an InputError naming the file if any of its weights is NaN or infinite (a corrupt file, or a diverged run)"""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InputError(f"{path} holds NaN or infinite values in {len(bad)} tensors (e.g. {bad[0]}): the file is "
                         "corrupt or its training diverged; retrain it or start from another checkpoint.")


def load_finite(path: str | Path, model: nn.Module) -> dict[str, str]:
    """load_checkpoint, refusing weights that hold NaN or infinity with a sentence naming the file"""
    metadata = load_checkpoint(path, model)
    check_finite(model.state_dict(), path)
    return metadata
