"""Lesson 10's compression sweep (latentlab.sweep, tools/eval_sweep.py): the shipped sweep weights load with their
geometry, a missing, corrupt or mismatched file is one sentence naming `make sweep`, the measurements can tell a good
reconstruction from a bad one, and the denoiser's cost falls with the latent's size.

The tests work on copies of latentlab/weights/sweep/ in a temporary folder, so damaging them is safe.
"""

import importlib.util
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from latentlab import sweep
from latentlab.checkpoints import sha256_file
from latentlab.errors import InputError
from latentlab.photosets import SPLITS
from latentlab.vae import VAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def weights(tmp_path) -> Path:
    """a copy of the shipped sweep: twelve safetensors files and their manifests"""
    folder = tmp_path / "sweep"
    folder.mkdir()
    for path in sweep.SWEEP_DIR.glob("*_f*c*.*"):
        shutil.copy(path, folder / path.name)
    return folder


def test_geometries_know_their_size_and_refuse_other_names():
    assert [sweep.geometry(n).compression for n in sweep.GEOMETRIES] == [12, 3, 48, 12, 192, 48]
    sd = sweep.geometry("f8c4")
    assert (sd.factor, sd.channels, sd.values_per_pixel, sd.latent_shape(64)) == (8, 4, 1 / 16, (4, 8, 8))
    assert sweep.parse("f32c64").compression == 48 and sweep.parse("f4c3").compression == 16  # LDM's too
    assert [sweep.parse(n).per_pixel for n in ("f4c16", "f4c3", "f16c4")] == ["1", "3/16", "1/64"]
    for wrong in ("f8c8", "f32c32", "F8C4", 8, None):
        with pytest.raises(InputError, match="f4c4, f4c16, f8c4"):
            sweep.geometry(wrong)
    with pytest.raises(InputError, match="f<factor>c<channels>"):
        sweep.parse("8x4")
    assert {sweep.parse(n).compression for n in sweep.LDM_KL} == {16, 48}


def test_every_geometry_loads_with_the_latent_it_names(weights):
    assert sweep.missing(weights) is None
    for name in sweep.GEOMETRIES:
        g, vae = sweep.geometry(name), sweep.load_vae(name, weights)
        unet, record = sweep.load_denoiser(name, weights)
        assert (vae.factor, vae.config.latent_channels) == (g.factor, g.channels), name
        image_size = record["training"]["image_size"]
        assert unet.config.in_channels == g.channels and unet.config.sample_size == image_size // g.factor, name
        assert record["vae"] == f"vae_{name}" and not vae.training and not unet.training


@pytest.mark.parametrize("damage,words", [
    (lambda d: (d / "vae_f8c4.safetensors").unlink(), "vae_f8c4 weights are missing"),
    (lambda d: (d / "denoiser_f16c16.json").unlink(), "denoiser_f16c16 manifest is missing"),
    (lambda d: (d / "vae_f4c16.json").write_text("{"), "not valid JSON"),
], ids=["missing-weights", "missing-manifest", "broken-manifest"])
def test_a_missing_or_unreadable_file_is_one_sentence_naming_make_sweep(weights, damage, words):
    damage(weights)
    message = sweep.missing(weights)
    assert message is not None and words in message and "`make sweep`" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    geometry = next(n for n in sweep.GEOMETRIES if n in message)
    with pytest.raises(InputError, match="`make sweep` rebuilds them"):
        sweep.load_denoiser(geometry, weights)


def test_a_corrupt_file_is_caught_by_its_sha256(weights):
    path = weights / "denoiser_f16c4.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the middle of the weights
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="denoiser_f16c4 weights .* are corrupt .*`make sweep`"):
        sweep.load_denoiser("f16c4", weights)
    sweep.load_vae("f16c4", weights)  # its VAE is fine
    assert "corrupt" in sweep.missing(weights)


def test_a_denoiser_is_refused_beside_a_vae_it_was_not_trained_on(weights):
    path = weights / "vae_f8c16.safetensors"
    tensors = load_file(path)
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 0.01  # a retrained VAE: valid, with its own manifest, but another one
    save_file(tensors, path, metadata={"config": json.dumps(sweep.manifest("vae_f8c16", weights)["config"])})
    record = sweep.manifest("vae_f8c16", weights)
    (weights / "vae_f8c16.json").write_text(json.dumps({**record, "sha256": sha256_file(path)}))
    sweep.load_vae("f8c16", weights)
    with pytest.raises(InputError, match="denoiser_f8c16 was trained on another vae_f8c16"):
        sweep.load_denoiser("f8c16", weights)


def test_a_denoiser_step_costs_more_on_a_larger_latent(weights):
    flops = {n: sweep.step_flops(sweep.load_denoiser(n, weights)[0])["gflops"] for n in sweep.GEOMETRIES}
    for c in (4, 16):
        assert flops[f"f4c{c}"] > flops[f"f8c{c}"] > flops[f"f16c{c}"]
        for f in (4, 8):  # half the side: a quarter of the positions, so about a quarter of the work
            assert 3 < flops[f"f{f}c{c}"] / flops[f"f{2 * f}c{c}"] < 5
    for f in (4, 8, 16):  # channels reach only the first and last convolutions
        assert 1 < flops[f"f{f}c16"] / flops[f"f{f}c4"] < 1.1


def test_step_times_time_each_unet_on_one_thread_and_give_the_threads_back(weights):
    unets = {n: sweep.load_denoiser(n, weights)[0] for n in ("f4c16", "f16c4")}
    torch.set_num_threads(2)
    seen = []
    for unet in unets.values():
        unet.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    times = sweep.step_times(unets, batch=2, repeats=2, rounds=2)
    assert torch.get_num_threads() == 2 and set(seen) == {1}
    assert set(times) == set(unets) and all(t["repeats"] == 4 and t["batch"] == 2 and t["ms"] > 0
                                            for t in times.values())
    assert all(t["q1"] <= t["ms"] <= t["q3"] for t in times.values())


class _Stand(nn.Module):
    """a stand-in VAE of factor 8 and 4 channels: returns its input changed by `fn`"""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.factor, self.config = fn, 8, VAEConfig()

    def forward(self, x):
        return self.fn(x)


def test_reconstruction_tells_a_perfect_vae_from_a_colour_cast():
    perfect = sweep.reconstruction(_Stand(lambda x: x), size=64, patch=32)
    cast = sweep.reconstruction(_Stand(lambda x: (x + 0.1).clamp(-1, 1)), size=64, patch=32)
    assert list(perfect) == ["validation", "test", "chart"]
    assert list(perfect["test"]) == list(SPLITS["test"]) and list(perfect["validation"]) == list(SPLITS["validation"])
    assert perfect["chart"]["worst"] == 0 and sweep.mean_db(perfect) > 60
    assert 12 < cast["chart"]["mean"] <= cast["chart"]["worst"] < 13.5  # 0.1 of [-1, 1] is 12.75 / 255
    assert sweep.mean_db(cast) == pytest.approx(20 * math.log10(2 / 0.1), abs=0.5)  # a 0.1 offset on a range of 2
    assert sweep.mean_db(cast, "test", "bicubic") == sweep.mean_db(perfect, "test", "bicubic")
    kept = sweep.reconstruction(_Stand(lambda x: x), size=64, splits=("test",), patch=32, keep_images=True)["images"]
    assert kept["test"].shape == (2, 3, 64, 64) and kept["chart"].shape == (1, 3, 128, 192)


def test_inversions_name_the_pairs_where_fewer_values_reconstruct_better():
    assert sweep.inversions({"f4c16": 30.0, "f8c4": 25.0, "f16c4": 22.0, "f16c16": 25.0}) == []  # ties are no inversion
    assert sweep.inversions({"f4c16": 24.0, "f8c4": 25.0, "f16c4": 22.0}) == [("f8c4", "f4c16")]
    assert sweep.inversions({name: 20.0 + sweep.parse(name).compression for name in sweep.LDM_KL})[:1] == [
        ("f8c4", "f4c3")]


def test_the_ceiling_passes_real_shapes_and_fails_a_decoder_that_loses_them():
    kept = sweep.ceiling(_Stand(lambda x: x), n=8, size=64)
    lost = sweep.ceiling(_Stand(lambda x: x.mean((2, 3), keepdim=True).expand_as(x)), n=8, size=64)  # flat colour
    assert kept["recognised"] >= 0.85 and kept["as_drawn"] == kept["recognised"]
    assert lost["recognised"] == 0 and lost["psnr_db"] < kept["psnr_db"]


def test_judged_reads_the_manifest_and_refuses_one_without_samples(weights):
    record = sweep.manifest("denoiser_f8c4", weights)
    judged = sweep.judged(record)
    asked = {k: v["asked"] for k, v in record["quality"]["by_request"].items()}
    assert judged["as_asked"] == record["quality"]["recognised_as_asked"] and judged["samples"] == sum(asked.values())
    assert all((judged["per_class"][k] is None) == (n == 0) for k, n in asked.items())
    with pytest.raises(InputError, match="no judged samples"):
        sweep.judged({**record, "quality": {}})


def test_draw_asks_for_each_shape_in_turn_and_decodes_images(weights):
    unet, record = sweep.load_denoiser("f16c16", weights)
    images, asked = sweep.draw(unet, sweep.load_vae("f16c16", weights), record, n=4, ddim_steps=2)
    side = record["training"]["image_size"]
    assert images.shape == (4, 3, side, side) and asked.tolist() == [0, 1, 2, 3]
    assert images.min() >= -1 and images.max() <= 1


def _prose(page: str) -> str:
    """the page without the contents of its generated blocks"""
    return re.sub(r"(<!-- sweep:(\w+) -->\n).*?(\n<!-- /sweep:\2 -->)", r"\1\3", page, flags=re.S)


def _tool():
    spec = importlib.util.spec_from_file_location("latentlab_tools_eval_sweep", ROOT / "tools" / "eval_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tool_writes_every_number_and_fills_only_the_page_tables(weights, tmp_path, capsys):
    page = tmp_path / "page.md"
    source = (ROOT / "docs" / "compression-sweep.md").read_text()
    page.write_text(source)
    out = tmp_path / "sweep.json"
    tool = _tool()
    assert tool.main(["--weights-dir", str(weights), "--json", str(out), "--page", str(page), "--size", "64",
                      "--patch", "32", "--shapes", "4", "--batch", "2", "--repeats", "1", "--rounds", "1"]) == 0
    result = json.loads(out.read_text())
    assert list(result["geometries"]) == list(sweep.GEOMETRIES) and result["ldm_kl_psnr_db"] == sweep.LDM_KL
    row = result["geometries"]["f4c4"]
    assert row["compression"] == 12 and row["flops_vs_f8c4"] > 3 and result["geometries"]["f8c4"]["time_vs_f8c4"] == 1
    filled = page.read_text()
    smoke = json.loads((weights / "vae_f8c4.json").read_text())["recipe"].get("smoke", False)
    assert "placeholder: filled by" not in filled and ("Smoke-test weights" in filled) == smoke  # said when smoke
    for name in sweep.GEOMETRIES:
        assert f"| {name} |" in filled
    assert _prose(filled) == _prose(source)  # the hand-written text is untouched
    assert "Halving the latent's side" in capsys.readouterr().out
    (weights / "vae_f4c4.safetensors").unlink()
    assert tool.main(["--weights-dir", str(weights), "--json", str(out), "--page", str(page)]) == 2
    assert "`make sweep`" in capsys.readouterr().err


def test_lesson_10_without_the_sweep_weights_says_make_sweep_once_and_runs_on(tmp_path):
    """the sweep's sections of lesson 10 (with its imports) on an empty weights folder: no error, one sentence"""
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    lesson = nbformat.read(ROOT / "notebooks" / "10_latent_formats.ipynb", as_version=4)
    code = [c for c in lesson.cells if c.cell_type == "code"]
    start = next(i for i, c in enumerate(code) if "sweep.missing()" in c.source)
    end = next(i for i, c in enumerate(code) if "load_taef1_or_course16" in c.source)  # section 10: online or f8c16
    setup = next(c for c in code if "from latentlab import" in c.source)
    empty = nbformat.v4.new_code_cell(f"sweep.SWEEP_DIR = __import__('pathlib').Path({str(tmp_path)!r})")
    lesson.cells = [setup, empty, *code[start:end]]
    assert all("if ready:" in c.source for c in code[start + 1:end])  # every later sweep cell is guarded
    NotebookClient(lesson, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    printed = [o.get("text", "") for c in lesson.cells for o in c.get("outputs", [])]
    assert not [o for c in lesson.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert "".join(printed).strip().endswith("`make sweep` rebuilds them in a clone of the repository "
                                               "(recipes/sweep/, about 1.5 hours on two CPU threads).")
    assert sum("make sweep" in text for text in printed) == 1
