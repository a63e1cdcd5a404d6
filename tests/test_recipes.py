"""Training settings as data: flags generated from the fields, recorded commands parsed back, recipes equal to what
made the shipped weights, and the whole rebuild chain (`make weights`) run small, stage feeding stage."""

import json
import re
import shlex
import shutil
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from latentlab import gcompris, recipes, wallpapers
from latentlab.checkpoints import WEIGHTS_DIR, sha256_file
from latentlab.cli import main
from latentlab.denoiser_training import DenoiserTraining
from latentlab.errors import InputError
from latentlab.tiny_decoder_training import TinyDecoderTraining
from latentlab.train_cli import SETTINGS, run_recipes
from latentlab.vae_training import VAETraining

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"


def _what_is_learned(settings) -> dict:
    """the settings that shape the weights: all but paths (a recipe names outputs) and the device"""
    return {f.name: getattr(settings, f.name) for f in fields(settings) if f.metadata["kind"] not in ("path", "machine")}


def _recorded_commands(manifest: dict) -> list[str]:
    """the command of each run that made a model, first to last (earlier runs are nested under "base")"""
    commands = []
    while manifest:
        commands.append(manifest["command"])
        manifest = manifest.get("base")
    return commands[::-1]


@pytest.mark.parametrize("cls", [VAETraining, DenoiserTraining, TinyDecoderTraining])
def test_flags_are_generated_from_the_fields_with_one_set_of_defaults(cls):
    import argparse

    parser = argparse.ArgumentParser()
    recipes.add_flags(parser, cls)
    args = parser.parse_args([])
    assert recipes.from_args(cls, args) == cls()  # the flags' defaults are the dataclass's
    flags = [a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"]
    assert flags == [recipes.flag(f.name) for f in fields(cls)]
    assert all(f.metadata["help"] for f in fields(cls))


def test_a_recorded_command_parses_back_into_the_same_settings():
    settings = VAETraining(steps=7, crop_scale=(0.1, 0.5), rgb_shuffle=True, average=0.99, threads=1, out="a b.safetensors")
    line = recipes.command(settings)
    assert "--rgb-shuffle yes" in line and "--crop-scale 0.1,0.5" in line and "'a b.safetensors'" in line
    assert "--device" not in line  # unset settings are left out, not written as None
    assert recipes.from_command(VAETraining, line) == settings
    continued = VAETraining(init="first.safetensors", block_out_channels=(8, 16))
    assert "--block-out-channels" not in recipes.command(continued)  # the checkpoint brings its architecture
    with pytest.raises(InputError, match="not a `latentlab train unet` command"):
        recipes.from_command(DenoiserTraining, line)


def test_settings_are_checked_however_they_are_made():
    with pytest.raises(InputError, match=r"^eval_every must be an integer >= 1, not 0\.$"):
        VAETraining(eval_every=0)
    with pytest.raises(InputError, match="lr must be a number > 0"):
        DenoiserTraining(lr=-1.0)
    with pytest.raises(InputError, match="a list of 2 numbers|two fractions"):
        VAETraining(crop_scale=[0.1])
    with pytest.raises(InputError, match="pixel space has none"):
        DenoiserTraining(space="pixel", finetune_vae=600)
    with pytest.raises(InputError, match="at least one batch"):
        DenoiserTraining(num_images=8, batch_size=32)
    assert VAETraining(crop_scale=[0.1, 0.2]).crop_scale == (0.1, 0.2)  # TOML lists become the field's tuple
    assert DenoiserTraining(time_budget=60).time_budget == 60.0 and DenoiserTraining(space="pixel").vae is None


@pytest.mark.parametrize(
    "job,args,words",
    [
        ("vae", ["--checkpoint-every", "0"], "--checkpoint-every must be an integer >= 1, not 0."),
        ("vae", ["--eval-every", "0"], "--eval-every must be an integer >= 1, not 0."),
        ("vae", ["--lr", "-1"], "--lr must be a number > 0, not -1."),
        ("vae", ["--threads", "0"], "--threads must be an integer >= 1, not 0."),
        ("vae", ["--out", "model.json"], "--out must be a path ending in .safetensors"),
        ("unet", ["--eval-samples", "-3"], "--eval-samples must be an integer >= 0, not -3."),
        ("unet", ["--image-size", "0"], "--image-size must be a positive multiple of 8"),
        ("unet", ["--time-budget", "-1"], "--time-budget must be a number > 0, not -1."),
        ("unet", ["--finetune-vae", "-4"], "--finetune-vae must be an integer >= 0, not -4."),
        ("unet", ["--attention-head-dim", "0"], "--attention-head-dim must be an integer >= 1, not 0."),
        ("unet", ["--eval-steps", "0"], "--eval-steps must be an integer >= 1, not 0."),
        ("unet", ["--checkpoint-every", "0"], "--checkpoint-every must be an integer >= 1, not 0."),
        ("unet", ["--out", "model.json"], "--out must be a path ending in .safetensors"),
        ("unet", ["--beta-schedule", "cosine"], "--beta-schedule must be one of linear, scaled_linear"),
        ("unet", ["--lr", "inf"], "--lr must be a number > 0, not inf."),
        ("vae", ["--beta", "nan"], "--beta must be a number >= 0, not nan."),
        ("vae", ["--augment", "1.5"], "--augment must be a fraction between 0 and 1, not 1.5."),
        ("vae", ["--dead-leaves", "-0.1"], "--dead-leaves must be a fraction between 0 and 1, not -0.1."),
    ],
)
def test_out_of_range_flags_get_one_sentence_and_exit_2(job, args, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit:
        main(["train", job, *args])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and words in err and err.count("\n") == 1 and "usage" not in err
    assert list(tmp_path.iterdir()) == []


def test_recipes_name_outputs_never_paths():
    for path in sorted(RECIPES.rglob("*.toml")):  # recipes/sweep/ too
        text = path.read_text()
        assert "/tmp" not in text and not re.search(r'=\s*"[^"]*[/\\][^"]*"', text), path  # no path in any value
        stages = recipes.read_recipe(path, SETTINGS)
        assert stages[-1].name == path.stem  # the last stage makes the model the file is named for
        assert all(s.settings.device is None for s in stages)  # the same recipe runs on a CPU or a GPU


@pytest.mark.parametrize(
    "text,words",
    [
        ('[[stage]]\nname = "x"\njob = "vae"\nstep = 3\n', "'step' is not a recipe setting of `vae`"),
        ('[[stage]]\nname = "x"\njob = "vae"\ninit = "/tmp/a.safetensors"\n', "names an earlier stage's output"),
        ('[[stage]]\nname = "x"\njob = "vae"\neval_every = 0\n', "stage 1 (x): eval_every must be an integer >= 1"),
        ('[[stage]]\nname = "x"\njob = "vae"\nout = "x.safetensors"\n', "'out' is not a recipe setting"),
        ('[[stage]]\nname = "x"\njob = "vae"\ndevice = "cuda"\n', "'device' is not a recipe setting"),
        ('[[stage]]\nname = "x"\njob = "vae"\ndata = "photos"\n', "'data' is not a recipe setting"),
        ('[[stage]]\nname = "x"\njob = "gan"\n', "job must be one of vae, unet"),
        ('[[stage]]\nname = "X/1"\njob = "vae"\n', "name must be a lower-case word"),
        ("steps = 3\n", "one or more [[stage]] tables"),
        ("[[stage]\n", "not valid TOML"),
    ],
)
def test_bad_recipes_are_refused_with_the_file_and_stage(text, words, tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        recipes.read_recipe(path, SETTINGS)
    assert words in str(err.value) and str(path) in str(err.value)


# which recipe holds the settings that made each shipped model (denoiser_vae comes out of the denoiser's run)
MADE_BY = {"vae": "vae", "denoiser": "denoiser", "denoiser_vae": "denoiser", "denoiser_pixel": "denoiser_pixel"}
if (WEIGHTS_DIR / "tiny_decoder.json").is_file():  # made by `make weights` once the course VAE it imitates ships
    MADE_BY["tiny_decoder"] = "tiny_decoder"


@pytest.mark.parametrize("model", sorted(MADE_BY))
def test_each_recipe_holds_the_exact_settings_that_made_the_shipped_model(model):
    manifest = json.loads((WEIGHTS_DIR / f"{model}.json").read_text())
    stages = recipes.read_recipe(RECIPES / f"{MADE_BY[model]}.toml", SETTINGS)
    commands = _recorded_commands(manifest)
    assert len(commands) == len(stages)  # one stage per run (the VAE: three)
    for line, stage, before in zip(commands, stages, [None, *stages]):
        cls = SETTINGS[shlex.split(line)[2]]
        assert type(stage.settings) is cls
        assert _what_is_learned(stage.settings) == _what_is_learned(recipes.from_command(cls, line)), stage.name
        if before is not None:  # the run started from the previous run's checkpoint; the recipe names it
            assert "--init" in line and stage.settings.init == before.name


def _weights_command() -> list[str]:
    """the `latentlab ...` words of the Makefile's `weights` target: the chain the tests run small"""
    makefile = (ROOT / "Makefile").read_text()
    recipe_lines = re.search(r"^weights:.*\n((?:\t.*\n?)+)", makefile, re.M).group(1).strip().splitlines()
    words = shlex.split(recipe_lines[-1])
    words = words[words.index("train"):]
    for option in ("--out-dir", "--work-dir"):  # the test writes to its own folder
        if option in words:
            del words[words.index(option):words.index(option) + 2]
    return [str(ROOT / w) if w.endswith(".toml") else w for w in words]


def test_the_rebuild_chain_runs_small_and_each_stage_consumes_the_one_before(tmp_path, capsys):
    if why := wallpapers.unavailable() or gcompris.unavailable():  # the VAE's last stages crop Debian's photographs
        pytest.skip(why)
    shipped = {p.name: sha256_file(p) for p in WEIGHTS_DIR.glob("*") if p.is_file()}
    words = _weights_command()
    assert words[:2] == ["train", "recipe"] and [Path(w).name for w in words[2:]] == [
        "vae.toml", "tiny_decoder.toml", "denoiser.toml", "denoiser_pixel.toml"]
    assert main([*words, "--smoke", "--out-dir", str(tmp_path), "--work-dir", str(tmp_path / "stages")]) == 0
    capsys.readouterr()

    def manifest(name, folder=tmp_path):
        return json.loads((folder / f"{name}.json").read_text())

    stages = tmp_path / "stages"
    runs = [manifest(f"vae_run{i}", stages) for i in range(1, 11)]
    vae = manifest("vae")
    denoiser_vae, denoiser, pixel = manifest("denoiser_vae"), manifest("denoiser"), manifest("denoiser_pixel")
    tiny = manifest("tiny_decoder")
    for name, m, folder in [*((f"vae_run{i}", run, stages) for i, run in enumerate(runs, 1)),
                            ("vae", vae, tmp_path), ("tiny_decoder", tiny, tmp_path), ("denoiser", denoiser, tmp_path),
                            ("denoiser_pixel", pixel, tmp_path)]:
        assert m["sha256"] == sha256_file(folder / f"{name}.safetensors")
        assert m["recipe"]["stage"] == name and m["recipe"]["smoke"] is True and m["recipe"]["file"].startswith("recipes/")
        assert m["git_commit"] and m["steps_done"] == 2 and m["interrupted"] is False
    # each stage consumed the previous stage's output, byte for byte
    for before, after in zip(runs, [*runs[1:], vae]):
        assert after["base"]["sha256"] == before["sha256"]
    chain = vae
    for run in reversed(runs):  # the whole chain is carried in the final manifest
        chain = chain["base"]
        assert chain["sha256"] == run["sha256"]
    assert "base" not in chain
    assert denoiser_vae["base_vae_sha256"] == vae["sha256"]
    assert tiny["teacher"]["sha256"] == vae["sha256"]  # distilled from the VAE this chain made, not the shipped one
    assert denoiser["vae"] == "denoiser_vae" and denoiser["vae_sha256"] == denoiser_vae["sha256"]
    assert denoiser_vae["sha256"] == sha256_file(tmp_path / "denoiser_vae.safetensors")
    assert pixel["vae"] is None and "vae_sha256" not in pixel
    assert "quality" in denoiser and denoiser["quality"]["samples"] == 2  # judged, small
    # each stage ran its recipe's settings shrunk by --smoke, and --smoke shrinks only steps, sizes and evaluation
    for stage_name, m in [("vae", vae), ("denoiser", denoiser)]:
        settings = recipes.read_recipe(RECIPES / f"{stage_name}.toml", SETTINGS)[-1].settings
        small = recipes.smoke(settings)
        expected = json.loads(json.dumps(asdict(small)))
        assert {k: v for k, v in m["training"].items() if k not in ("init", "vae", "out")} == {
            k: v for k, v in expected.items() if k not in ("init", "vae", "out")}
        changed = {f.name for f in fields(settings) if getattr(small, f.name) != getattr(settings, f.name)}
        assert changed <= {"steps", "batch_size", "crop", "eval_size", "num_images", "image_size", "finetune_vae",
                           "eval_samples", "eval_steps"} and "steps" in changed
    assert {p.name: sha256_file(p) for p in WEIGHTS_DIR.glob("*") if p.is_file()} == shipped  # the shipped weights are untouched


def test_a_recipe_that_needs_an_output_nobody_makes_is_refused_before_anything_runs(tmp_path, capsys):
    code = main(["train", "recipe", str(RECIPES / "denoiser.toml"), "--smoke", "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "vae names 'vae', which no earlier stage makes" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_stage_may_not_overwrite_an_earlier_one_and_the_commit_is_unknown_outside_git(tmp_path, monkeypatch):
    twice = [str(RECIPES / "vae.toml"), str(RECIPES / "vae.toml")]
    with pytest.raises(InputError, match="would overwrite 'vae_run1'"):
        run_recipes(twice, tmp_path, smoke_run=True)
    assert list(tmp_path.iterdir()) == []
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", recipes.git_commit())
    monkeypatch.setattr(recipes, "ROOT", tmp_path)  # an installed copy: no .git beside the package
    assert recipes.git_commit() == "unknown"


def test_the_colour_stages_change_the_data_and_optimisation_never_the_loss():
    """stages 4 and 5 continue the photo runs on the colour mix; stage 5 only on larger crops, at the same density;
    stage 6 trains the decoder alone on still larger crops; stage 7 the decoder again, with fine leaves and patches;
    stage 8 the same run with foliage in place of the fine leaves; stage 9 mostly on the Debian wallpaper photos;
    stage 10 mostly on GCompris' photographs, with a little of the wallpapers left; stage 11 the same data, both parts"""
    run3, run4, run5, run6, run7, run8, run9, run10, last = recipes.read_recipe(RECIPES / "vae.toml", SETTINGS)[2:]
    assert tuple(s.settings.init for s in (run4, run5, run6, run7, run8, run9, run10, last)) == (
        "vae_run3", "vae_run4", "vae_run5", "vae_run6", "vae_run7", "vae_run8", "vae_run9", "vae_run10")
    assert last.name == "vae" and (run6.name, run7.name, run8.name, run9.name, run10.name) == (
        "vae_run6", "vae_run7", "vae_run8", "vae_run9", "vae_run10")
    assert run3.settings.augment == run3.settings.dead_leaves == 0 and run4.settings.augment > 0 < run5.settings.dead_leaves
    learned3, learned4, learned5, learned6, learned7, learned8, learned9, learned10, learned11 = (
        _what_is_learned(s.settings) for s in (run3, run4, run5, run6, run7, run8, run9, run10, last))
    changed = {k for k, v in learned4.items() if v != learned3[k]}
    assert changed == {"augment", "dead_leaves", "lr", "average", "seed", "steps", "eval_every", "checkpoint_every"}
    changed = {k for k, v in learned5.items() if v != learned4[k]}
    assert changed == {"crop", "crop_scale", "batch_size", "dead_leaves", "seed", "steps"}
    # twice the crop side from twice the photo region: the same pixel density, twice the pixels per step
    density = [[side / stage.settings.crop for side in stage.settings.crop_scale]
               for stage in (run4, run5, run6, run7, run8, run9, run10, last)]
    assert all(d == pytest.approx(density[0]) for d in density)
    assert run5.settings.batch_size * run5.settings.crop**2 == 2 * run4.settings.batch_size * run4.settings.crop**2
    changed = {k for k, v in learned6.items() if v != learned5[k]}
    assert changed == {"train_part", "crop", "crop_scale", "batch_size", "dead_leaves", "lr", "seed"}
    changed = {k for k, v in learned7.items() if v != learned6[k]}  # the same run on other data
    assert changed == {"augment", "dead_leaves", "fine_leaves", "flat_patches", "seed"}
    assert run5.settings.fine_leaves == run6.settings.flat_patches == 0 < run7.settings.fine_leaves
    changed = {k for k, v in learned8.items() if v != learned7[k]}  # and once more, foliage for the fine leaves
    assert changed == {"fine_leaves", "foliage", "seed"}
    assert run8.settings.fine_leaves == run7.settings.foliage == 0 < run8.settings.foliage == run7.settings.fine_leaves
    changed = {k for k, v in learned9.items() if v != learned8[k]}  # then the wallpaper photos, for most of the rest
    assert changed == {"augment", "foliage", "wallpapers", "seed"}
    assert run8.settings.wallpapers == 0 < run9.settings.foliage < run9.settings.wallpapers
    changed = {k for k, v in learned10.items() if v != learned9[k]}  # then GCompris' photos, for most of that share
    assert changed == {"wallpapers", "gcompris", "seed"}
    assert run9.settings.gcompris == 0 < run10.settings.wallpapers < run10.settings.gcompris
    assert run10.settings.photos() < run9.settings.photos() and run10.settings.wallpapers < run9.settings.wallpapers
    changed = {k for k, v in learned11.items() if v != learned10[k]}  # then the same data for both parts, longer
    assert changed == {"train_part", "steps", "seed"} and last.settings.steps > run10.settings.steps
    assert {s.settings.train_part for s in (run6, run7, run8, run9, run10)} == {"decoder"}
    assert all(s.settings.train_part == "all" for s in (run3, run4, run5, last))


def test_the_sweep_trains_each_geometry_by_one_recipe_and_its_smoke_run_writes_them_all(tmp_path, capsys):
    files = sorted((RECIPES / "sweep").glob("vae_*.toml"))
    stages = [stage for path in files for stage in recipes.read_recipe(path, SETTINGS)]
    geometry = {s.name: (2 ** (len(s.settings.block_out_channels) - 1), s.settings.latent_channels) for s in stages}
    assert geometry == {"vae_f4c4": (4, 4), "vae_f4c16": (4, 16), "vae_f8c4": (8, 4), "vae_f8c16": (8, 16),
                        "vae_f16c4": (16, 4), "vae_f16c16": (16, 16)}
    first = _what_is_learned(stages[0].settings)
    for stage in stages:  # the same data, steps, seed and optimisation: only the geometry differs
        changed = {k for k, v in _what_is_learned(stage.settings).items() if v != first[k]}
        assert changed <= {"block_out_channels", "latent_channels"} and stage.settings.init is None, stage.name
    assert main(["train", "recipe", *map(str, files), "--smoke", "--out-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    for name, (factor, channels) in geometry.items():
        made = json.loads((tmp_path / f"{name}.json").read_text())
        config = made["config"]
        assert (2 ** (len(config["block_out_channels"]) - 1), config["latent_channels"]) == (factor, channels), name
        assert config["scaling_factor"] > 0 and made["recipe"] == {"file": f"recipes/sweep/{name}.toml",
                                                                   "stage": name, "smoke": True}
        assert recipes.from_command(VAETraining, made["command"]).latent_channels == channels  # the flag is recorded


def test_the_shipped_denoisers_are_class_conditional_and_their_smoke_run_judges_each_shape_as_asked(tmp_path, capsys):
    for suffix in (".safetensors", ".json"):  # the shipped VAE, as `vae = "vae"` finds it in the output folder
        shutil.copy(WEIGHTS_DIR / f"vae{suffix}", tmp_path / f"vae{suffix}")
    assert main(["train", "recipe", str(RECIPES / "denoiser.toml"), "--smoke", "--out-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    made = json.loads((tmp_path / "denoiser.json").read_text())
    assert made["config"]["num_class_embeds"] == 5 and made["classes"] == ["circle", "square", "triangle", "cross"]
    assert "--classes yes" in made["command"] and "--guidance 2.0" in made["command"]
    quality = made["quality"]  # the smoke run judges 2 samples: one circle and one square asked for
    assert quality["guidance"] == 2.0 and 0 <= quality["recognised_as_asked"] <= quality["recognised"]
    assert [row["asked"] for row in quality["by_request"].values()] == [1, 1, 0, 0]
    # the latent and pixel recipes differ only in the space, the VAE and its adaptation: a fair comparison
    latent, pixel = (recipes.read_recipe(RECIPES / f"{name}.toml", SETTINGS)[-1].settings
                     for name in ("denoiser", "denoiser_pixel"))
    assert {k for k, v in _what_is_learned(latent).items() if v != _what_is_learned(pixel)[k]} == {"space", "finetune_vae"}
    assert latent.classes and pixel.classes and latent.guidance == pixel.guidance


def test_each_sweep_geometry_has_one_latent_denoiser_differing_only_in_its_vae(tmp_path, capsys):
    files = sorted((RECIPES / "sweep").glob("denoiser_*.toml"))
    stages = [stage for path in files for stage in recipes.read_recipe(path, SETTINGS)]
    assert {s.name: s.settings.vae for s in stages} == {f"denoiser_{g}": f"vae_{g}" for g in
                                                         ("f4c4", "f4c16", "f8c4", "f8c16", "f16c4", "f16c16")}
    first = _what_is_learned(stages[0].settings)
    for stage in stages:  # the same UNet, data, budget and seed: only the latent it learns differs
        changed = {k for k, v in _what_is_learned(stage.settings).items() if v != first[k]}
        assert changed <= {"vae"} and stage.settings.time_budget and not stage.settings.finetune_vae, stage.name
    wanted = ["f4c16", "f16c4"]  # the largest and the smallest latent, from the VAEs' own smoke runs
    vaes = [str(RECIPES / "sweep" / f"vae_{g}.toml") for g in wanted]
    dens = [str(RECIPES / "sweep" / f"denoiser_{g}.toml") for g in wanted]
    assert main(["train", "recipe", *vaes, *dens, "--smoke", "--out-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    for g, (channels, side) in zip(wanted, [(16, 8), (4, 2)]):  # smoke Shapes are 32x32: 8x8 at f4, 2x2 at f16
        made = json.loads((tmp_path / f"denoiser_{g}.json").read_text())
        assert made["vae"] == f"vae_{g}" and made["config"]["in_channels"] == channels
        assert made["config"]["sample_size"] == side and "recognised" in made["quality"]
