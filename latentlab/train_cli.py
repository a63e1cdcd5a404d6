"""Train the course's models: `latentlab train vae | unet | tiny-decoder | recipe`, the commands that made the shipped weights.

`train vae` and `train unet` take one flag per field of VAETraining / DenoiserTraining (generated from the fields,
so there is one set of defaults, each flag range-checked). `train recipe FILE...` runs recipe files stage by stage
(recipes/*.toml: the exact settings of every shipped model); `make weights` runs them all, in order. Each run
writes its checkpoint (safetensors, whole or not at all) and a JSON manifest beside it: the command, the settings,
the recipe and git commit, wall time and the model's own checks. Ctrl-C saves both, marked interrupted (exit 130).
Lesson 02 prints the `train vae` runs behind the course VAE, lesson 08 the `train unet` run behind its denoiser.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from latentlab import denoiser_job, denoiser_training, tiny_decoder_training, vae_training
from latentlab.checkpoints import WEIGHTS_DIR
from latentlab.errors import InputError
from latentlab.recipes import OneLineParser, add_flags, from_args, read_recipe, references, shown_path, smoke

SETTINGS = {"vae": vae_training.VAETraining, "unet": denoiser_training.DenoiserTraining,
            "tiny-decoder": tiny_decoder_training.TinyDecoderTraining}
RUN = {"vae": vae_training.run, "unet": denoiser_job.run, "tiny-decoder": tiny_decoder_training.run}
MISSING_INPUTS = {"vae": vae_training.missing_inputs}  # what a job needs from the machine, checked before any stage runs
HELP = {"vae": "train the course VAE on crops of the bundled photos or your own (lessons 02-03)",
        "unet": "train lesson 08's denoiser on Shapes or your own folder (--data), in latent or pixel space",
        "tiny-decoder": "distil a tiny preview decoder from the course VAE's decoder (lessons 04 and 08)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model", required=True, metavar="MODEL", parser_class=OneLineParser)
    for job, cls in SETTINGS.items():
        job_parser = sub.add_parser(job, help=HELP[job], description=HELP[job])
        add_flags(job_parser, cls)
        job_parser.set_defaults(train_run=lambda args, job=job: RUN[job](from_args(SETTINGS[job], args)))
    recipe = sub.add_parser("recipe", help="run recipe files stage by stage (recipes/*.toml; `make weights` runs all)",
                            description="Run recipe files (recipes/*.toml) stage by stage, in the order given.")
    recipe.add_argument("recipes", nargs="+", metavar="RECIPE", help="e.g. recipes/vae.toml")
    recipe.add_argument("--out-dir", default=None,
                        help="where each recipe's model and manifest are written (default: the shipped weights folder)")
    recipe.add_argument("--work-dir", default=None, help="where earlier stages are written (default: OUT_DIR/stages)")
    recipe.add_argument("--smoke", action="store_true",
                        help="the same chain with steps, sizes and evaluation shrunk: seconds, to test that it runs")
    recipe.add_argument("--device", default=None, help="cpu, cuda or mps for every stage (default: the best available)")
    recipe.set_defaults(train_run=lambda args: run_recipes(args.recipes, args.out_dir, args.work_dir, args.smoke,
                                                           args.device))


def run(args: argparse.Namespace) -> int:
    return args.train_run(args)


def run_recipes(files: list[str | Path], out_dir: str | Path | None = None, work_dir: str | Path | None = None,
                smoke_run: bool = False, device: str | None = None) -> int:
    """run the stages of recipe files in order -> exit code; every file and reference is checked before any runs.

    The last stage of a recipe writes its model to `out_dir`, earlier stages to `work_dir`. A stage names what it
    starts from (init, vae) by the name of an earlier output: one made earlier in this run, or one already in
    out_dir or work_dir (e.g. the shipped VAE, when only recipes/denoiser.toml is run).
    """
    out_dir = _near(Path(out_dir) if out_dir is not None else WEIGHTS_DIR)
    work_dir = _near(Path(work_dir)) if work_dir is not None else out_dir / "stages"
    made: dict[str, Path] = {}  # the outputs of the stages planned so far, by name
    plan = []
    for file in files:
        stages = read_recipe(file, SETTINGS)
        for number, stage in enumerate(stages, 1):
            folder = out_dir if number == len(stages) else work_dir
            settings = replace(stage.settings, out=str(folder / f"{stage.name}.safetensors"), device=device)
            for field in references(settings):
                name = getattr(settings, field)
                if name is None:
                    continue
                found = made.get(name) or next((p for p in (out_dir / f"{name}.safetensors",
                                                            work_dir / f"{name}.safetensors") if p.is_file()), None)
                if found is None:
                    raise InputError(f"{file} stage {stage.name!r}: {field} names {name!r}, which no earlier stage "
                                     f"makes and {out_dir} does not hold; run the recipe that makes it first.")
                settings = replace(settings, **{field: str(found)})
            settings = smoke(settings) if smoke_run else settings
            for path in settings.outputs():
                if path.stem in made:
                    raise InputError(f"{file} stage {stage.name!r} would overwrite {path.stem!r}, made by an earlier "
                                     "stage; give each stage its own name.")
                made[path.stem] = path
            plan.append((stage, settings))
    for stage, settings in plan:  # what a stage reads from the machine: missing, it stops the run before hours of work
        why = MISSING_INPUTS[settings.job](settings) if settings.job in MISSING_INPUTS else None
        if why is not None:
            raise InputError(f"{shown_path(stage.recipe)} stage {stage.name!r} {why}")
    for stage, settings in plan:
        recipe = {"file": shown_path(stage.recipe), "stage": stage.name, **({"smoke": True} if smoke_run else {})}
        print(f"-- {recipe['file']}: stage {stage.name}{' (smoke)' if smoke_run else ''}", file=sys.stderr)
        code = RUN[settings.job](settings, recipe)
        if code:
            return code
    return 0


def _near(path: Path) -> Path:
    """a folder relative to the working folder when inside it, so recorded commands read latentlab/weights/..."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path
