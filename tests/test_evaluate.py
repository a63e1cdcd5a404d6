import json
import time

import pytest
import torch

from latentlab import evaluate
from latentlab.cli import main
from latentlab.photosets import SPLITS, TEST_PHOTOS, VALIDATION_PHOTOS, split_images
from latentlab.train import save_checkpoint
from latentlab.vae import VAE, VAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = VAEConfig(block_out_channels=(8, 8, 8, 8), norm_num_groups=4)


def _chart_only(reconstruct) -> dict:
    """evaluate with no photo split: the chart and its criteria alone"""
    return evaluate.evaluate(reconstruct, size=64, pca_crops=64, splits=())


def _verdicts(result) -> dict:
    return {c["name"]: c["ok"] for c in result["criteria"]}


def test_the_photo_sets_are_disjoint_and_the_test_photos_load_offline():
    names = [set(v) for v in SPLITS.values()]
    assert sum(len(n) for n in names) == len(set().union(*names))
    x = split_images("test", 64)
    assert x.shape == (len(TEST_PHOTOS), 3, 64, 64)
    rgb = (x + 1) / 2
    assert (rgb[:, 1] - rgb[:, 0]).amax() > 0.2  # green leads red somewhere: what the training photos lack


def test_a_perfect_reconstruction_passes_the_chart():
    result = _chart_only(lambda x: x)
    cc = result["colorchecker"]
    assert cc["worst"] < 0.01 and len(cc["patch_error"]) == 24
    verdicts = _verdicts(result)
    assert verdicts["ColorChecker worst patch (/255)"] and verdicts["ColorChecker mean patch (/255)"]
    assert verdicts["hue sweep: VAE - bicubic (dB)"]


def test_a_channel_permutation_fails_the_chart():
    result = _chart_only(lambda x: x[:, [1, 2, 0]])
    verdicts = _verdicts(result)
    assert not verdicts["ColorChecker worst patch (/255)"] and not verdicts["hue sweep: VAE - bicubic (dB)"]
    assert result["colorchecker"]["patch_error"]["neutral 5"] < 1.5  # greys survive a permutation
    assert result["colorchecker"]["patch_error"]["red"] > 50


def test_a_slight_orange_cast_fails_the_chart_but_a_tiny_one_passes():
    def cast(amount):
        shift = torch.tensor([amount, amount / 3, -amount]).view(1, 3, 1, 1) / 127.5
        return lambda x: (x + shift).clamp(-1, 1)

    orange = _chart_only(cast(8.0))  # +8 / +2.7 / -8 out of 255: hard to see, and out of bounds
    assert not _verdicts(orange)["ColorChecker worst patch (/255)"]
    assert not _verdicts(orange)["ColorChecker mean patch (/255)"]
    assert _verdicts(_chart_only(cast(2.0)))["ColorChecker mean patch (/255)"]
    blurred = _chart_only(lambda x: torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False))
    assert _verdicts(blurred)["ColorChecker worst patch (/255)"]  # blur at the edges is not a colour error


def test_colour_error_is_signed_per_channel_in_255_units():
    x = torch.zeros(1, 3, 8, 8)
    y = x + torch.tensor([10, 0, -5]).view(1, 3, 1, 1) / 127.5
    assert evaluate.colour_error(y, x)[0].tolist() == pytest.approx([10, 0, -5], abs=1e-4)


def test_eval_of_a_tiny_random_vae_is_quick_and_complete():
    torch.manual_seed(0)
    vae = VAE(TINY).eval()
    start = time.perf_counter()
    result = evaluate.evaluate(evaluate.vae_reconstruct(vae), size=64, pca_crops=64, splits=("validation", "test"))
    assert time.perf_counter() - start < 30
    assert [r["image"] for r in result["validation"]] == list(VALIDATION_PHOTOS)
    assert [r["image"] for r in result["test"]] == list(TEST_PHOTOS)
    assert {r["image"] for r in result["chart"]} == {"colorchecker", "hue_sweep", "fields"}
    row = result["test"][0]
    assert set(row["psnr_db"]) == {"vae", "bicubic", "pca"} and len(row["colour_error"]) == 3
    assert not _verdicts(result)["test: mean VAE - bicubic (dB)"]  # an untrained VAE is no better than bicubic
    assert "Done means" in evaluate.table(result)


def test_cli_eval_vae_json_and_figure_from_a_checkpoint(tmp_path, capsys, monkeypatch):
    vae = VAE(TINY)
    weights = save_checkpoint(tmp_path / "tiny.safetensors", vae, {"config": json.dumps(vars(TINY))})
    monkeypatch.setattr(evaluate, "SPLITS", ("validation",))  # keep the test short: one photo split
    figure = tmp_path / "eval.png"
    code = main(["eval", "vae", "--weights", str(weights), "--size", "64", "--pca-crops", "64", "--threads", "1",
                 "--figure", str(figure), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["figure"] == str(figure) and figure.stat().st_size > 10_000
    assert "colorchecker" in result and result["criteria"]
    assert main(["eval", "vae", "--weights", str(tmp_path / "missing.safetensors")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
