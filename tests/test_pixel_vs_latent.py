"""latentlab.pixel_vs_latent: lesson 07's comparison and the `latentlab bench` command.

No timing assertions: timed tests flake on a shared machine. The speed-up targets live in the benchmark's
output and in docs/benchmarks-pixel-vs-latent.md.
"""

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from latentlab import bench, cli, diffusion
from latentlab import pixel_vs_latent as pvl
from latentlab.errors import InputError
from latentlab.unet import UNet

pytestmark = pytest.mark.usefixtures("one_thread")

CONV_ONLY = replace(  # the benchmark UNet without any attention: every layer's cost follows the positions
    pvl.BENCH_UNET,
    down_block_types=("DownBlock2D",) * 4,
    up_block_types=("UpBlock2D",) * 4,
    add_attention=False,
)
CONTRACT_KEYS = {"device", "resolution", "factor", "pixel_ms_per_step", "latent_ms_per_step", "speedup", "flops_ratio"}


# ---- FLOPs


def test_conv_only_unet_flops_ratio_is_64_at_factor_8():
    """the pixel UNet (3 channels in and out, 512x512) vs the latent one (4 channels, 64x64): 8 x 8 = 64 positions.

    The first and last convolutions see 3 vs 4 channels, so the latent side does slightly more work per
    position; the time MLP is the same small constant on both sides. Both move the ratio by well under 1%.
    """
    flops = pvl.step_flops(512, 8, CONV_ONLY)
    assert flops["pixel_attention_share"] == 0 and flops["latent_attention_share"] == 0
    assert flops["flops_ratio"] == pytest.approx(64, rel=0.01)
    assert flops["flops_ratio"] < 64  # the 4-channel latent side does a little more per position, not less


def test_conv_only_ratio_at_equal_channels_is_64_up_to_the_time_mlp():
    """with 4 channels on both sides, only the time embedding (the same on both) keeps the ratio from 64 exactly"""
    model = UNet(pvl.unet_config(4, CONV_ONLY))
    big = bench.count_flops(model, torch.empty(1, 4, 256, 256, device="meta"), 10)["total"]
    small = bench.count_flops(model, torch.empty(1, 4, 32, 32, device="meta"), 10)["total"]
    time_mlp = bench.count_flops(model.time_embedding, torch.empty(1, 32, device="meta"))["total"]
    assert (big - time_mlp) / (small - time_mlp) == pytest.approx(64, rel=1e-3)  # the projections per ResBlock too


def test_attention_makes_the_ratio_exceed_64_and_its_share_grow():
    """q k^T has tokens^2 entries: at factor 8 the attention work falls 8^4 = 4096-fold, the rest 64-fold"""
    small, large = pvl.step_flops(128, 8), pvl.step_flops(1024, 8)
    assert small["flops_ratio"] > 64 and large["flops_ratio"] > small["flops_ratio"]
    assert large["pixel_attention_share"] > small["pixel_attention_share"]


# ---- memory: estimated first, refused before running


def test_memory_estimate_refuses_an_absurd_size_with_one_sentence():
    model = UNet(pvl.unet_config(3))
    need = bench.estimate_memory(model, torch.empty(1, 3, 65536, 65536, device="meta"), 10)
    assert need > 10**12  # terabytes: the 65536 x 65536 activations alone
    with pytest.raises(bench.MemoryWontFit) as err:
        bench.check_fits(need, "cpu", "pixel space at 65536x65536x3")
    message = str(err.value)
    assert message.startswith("pixel space at 65536x65536x3 needs about") and "skipped" in message
    assert message.count(". ") == 0 and "\n" not in message  # one sentence


def test_compare_skips_what_does_not_fit_instead_of_running_it():
    result = pvl.compare(resolution=65536, factor=8, steps=1, device="cpu")
    assert result.pixel.ms_per_step is None and result.latent.ms_per_step is None and result.speedup is None
    assert len(result.skipped) == 2 and all("needs about" in s for s in result.skipped)
    assert result.flops_ratio > 64  # counting costs nothing, so it is still reported
    assert result.as_dict()["speedup"] is None and "—" in pvl.format_table(result)


class _Decodes:
    """counts the course VAE's decodes: a refused decode must never start"""

    def __init__(self, monkeypatch):
        self.calls, real = 0, pvl.VAE.decode

        def decode(vae, z):
            self.calls += 1
            return real(vae, z)

        monkeypatch.setattr(pvl.VAE, "decode", decode)


def test_a_decode_that_will_not_fit_is_refused_in_one_sentence(monkeypatch):
    """the issue-14 probe in small: memory enough for the latent pass, then none left for the decode"""
    queries = []

    def free(device=None):  # plenty for the first question (the latent pass), 1 MB for every later one
        queries.append(device)
        return 10**12 if len(queries) == 1 else 10**6

    monkeypatch.setattr(bench, "available_memory", free)
    decodes = _Decodes(monkeypatch)
    result = pvl.compare(resolution=128, steps=1, device="cpu")
    assert result.latent.ms_per_step is not None and decodes.calls == 0
    assert result.decode_ms is None and result.latent_pipeline_ms is None and result.end_to_end_speedup is None
    decode_msg = [s for s in result.skipped if s.startswith("the VAE decode to 128x128 needs about")]
    assert len(decode_msg) == 1 and "\n" not in decode_msg[0] and decode_msg[0].count(". ") == 0
    assert result.decode_estimate_mb > 1  # 1.6 x the estimate > 0.9 MB: why it was refused


def test_a_long_decode_is_announced_and_timed_once(monkeypatch, capsys):
    monkeypatch.setattr(pvl, "LONG_DECODE_S", 0.0)  # every decode counts as long: no huge decode needed
    decodes = _Decodes(monkeypatch)
    result = pvl.compare(resolution=64, steps=1, device="cpu")
    assert decodes.calls == 1 and result.decode_repeats == 1 and result.decode_ms > 0  # no warm-up, one run
    err = capsys.readouterr().err
    assert err.startswith("the VAE decode to 64x64 needs about") and "roughly" in err and "timing it once" in err


def test_a_short_decode_is_warmed_up_and_repeated(monkeypatch, capsys):
    decodes = _Decodes(monkeypatch)
    result = pvl.compare(resolution=64, steps=1, device="cpu", decode=True)
    assert decodes.calls == 4 and result.decode_repeats == 3 and capsys.readouterr().err == ""


# ---- the loop, the results, the sizes


def test_ddim_steps_use_sds_schedule_and_land_on_the_clean_image():
    """with the true noise as the model's answer, K steps of the timed loop end on x_0 (Song et al. 2021, eq. 12)"""
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1, torch.randn(1, 3, 8, 8, generator=g)
    acp = diffusion.alphas_cumprod(diffusion.make_betas(**diffusion.SD_SCHEDULE))
    x_T = diffusion.q_sample(x0, 999, noise, acp)
    loop = pvl.DDIMSteps(lambda x, t: noise, x_T.clone(), steps=5, warmup=2)
    assert torch.equal(loop.alphas_cumprod, acp) and loop.timesteps == [999, 749, 500, 250, 0, -1]
    loop(), loop()  # warm-up calls leave the sample where it was
    assert torch.equal(loop.x, x_T)
    for _ in range(5):
        out = loop()
    assert torch.allclose(out, x0, atol=1e-5)


def _result(n: int, pixel_ms: float, latent_ms: float = 2.0) -> pvl.Comparison:
    pixel, latent = pvl.space_result(3, n), pvl.space_result(4, n // 8)
    for space, ms in ((pixel, pixel_ms), (latent, latent_ms)):
        times = [ms * 0.9, ms, ms * 1.1]
        space.add_timing(bench.Timing(ms, min(times), max(times), ms * 0.1, 3, "cpu", 0, times), ms / 2)
    return pvl.Comparison("cpu (2 threads)", "fp32", n, 8, 3, 1_000_000, pixel, latent, decode_ms=4.0)


def test_ratios_come_from_the_two_spaces():
    r = _result(128, pixel_ms=40.0)
    assert r.speedup == pytest.approx(20.0) and r.flops_ratio == pytest.approx(r.pixel.gflops / r.latent.gflops)
    low, high = r.speedup_range
    assert low < r.speedup < high and low == pytest.approx(r.pixel.q1_ms / r.latent.q3_ms)
    assert r.latent_pipeline_ms == pytest.approx(3 * 2.0 + 4.0)  # the latent loop of 3 steps plus the decode
    assert r.end_to_end_speedup == pytest.approx(3 * 40.0 / 10.0) and r.decode_share == pytest.approx(0.4)


def test_sizes_and_bad_input():
    assert pvl.sweep_sizes(512, 8) == [64, 128, 256, 512]
    assert pvl.check_sizes(512, 8) == 64
    with pytest.raises(InputError, match="resolution 500 is not a multiple of 64 .* such as 512"):
        pvl.check_sizes(500, 8)
    with pytest.raises(InputError, match="factor 6 is not a power of two"):
        pvl.check_sizes(512, 6)
    with pytest.raises(InputError, match="fp16 timing is meant for GPUs"):
        pvl.compare(resolution=64, device="cpu", dtype="fp16")
    with pytest.raises(InputError, match="unknown device"):
        pvl.compare(resolution=64, device="tpu")


def test_plot_sweep_draws_time_memory_and_ratio():
    fig = pvl.plot_sweep([_result(64, 20.0), _result(128, 80.0)])
    assert len(fig.axes) == 3 and all(ax.get_xscale() == "log" for ax in fig.axes)
    assert "cpu (2 threads)" in fig._suptitle.get_text()
    assert len(pvl.format_sweep([_result(64, 20.0)]).splitlines()) == 3



def test_efficiency_is_the_latent_steps_arithmetic_rate_over_the_pixel_steps():
    r = _result(128, pixel_ms=40.0)
    assert r.pixel.gflops_per_s == pytest.approx(r.pixel.gflops / 0.040)
    assert r.efficiency == pytest.approx(r.latent.gflops_per_s / r.pixel.gflops_per_s)
    assert "GFLOP/s achieved" in pvl.format_table(r)


def _tick_labels(ax) -> list[str]:
    ax.figure.canvas.draw()
    return [t.get_text() for t in ax.get_yticklabels() if t.get_text()]


def test_on_a_cpu_the_memory_panel_shows_the_estimate_only_and_says_so():
    results = [_result(64, 20.0), _result(128, 80.0)]  # "cpu (2 threads)": resident memory, not one pass's
    for r in results:
        r.latent.memory_mb = 0.0  # what a CPU often reads for a small pass
    fig = pvl.plot_sweep(results)
    memory = fig.axes[1]
    assert [line.get_label() for line in memory.get_lines()] == ["pixel: estimated", "latent: estimated"]
    assert "estimated" in memory.get_title()
    assert not {"0", "0.0"} & set(_tick_labels(memory))
    assert "memory per pass estimated" in pvl.format_sweep(results)
    assert "rough" in pvl.format_table(results[0])


def test_on_cuda_the_measured_peak_is_drawn_beside_the_estimate_without_zeros():
    results = [_result(64, 20.0), _result(128, 80.0)]
    for r in results:
        r.device = "cuda: a test GPU"
    results[0].latent.memory_mb = 0.0  # nothing to place on a log axis
    memory = pvl.plot_sweep(results).axes[1]
    lines = {line.get_label(): line for line in memory.get_lines()}
    assert set(lines) == {"pixel: estimated", "latent: estimated", "pixel: measured peak", "latent: measured peak"}
    assert list(lines["latent: measured peak"].get_xdata()) == [128**2]
    assert "measured (estimate)" in pvl.format_sweep(results)


def test_another_run_at_one_size_is_drawn_beside_the_sweep():
    results = [_result(64, 20.0), _result(128, 80.0)]
    fig = pvl.plot_sweep(results, also=_result(128, 100.0))
    assert any("another run at 128²" in text.get_text() for text in fig.axes[2].get_legend().get_texts())


# ---- the command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "latentlab", "bench", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_json_has_the_contract_keys():
    out = _cli("--resolution", "64", "--factor", "8", "--steps", "1", "--device", "cpu", "--threads", "1", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)  # one JSON object, nothing else on stdout
    assert set(list(result)[:7]) == CONTRACT_KEYS  # the keys the README promises come first
    assert result["device"] == "cpu (1 thread)" and result["resolution"] == 64 and result["factor"] == 8
    assert result["latent"]["shape"] == [1, 4, 8, 8] and result["pixel"]["shape"] == [1, 3, 64, 64]
    assert result["pixel_ms_per_step"] == result["pixel"]["ms_per_step"]
    assert result["speedup"] == pytest.approx(result["pixel_ms_per_step"] / result["latent_ms_per_step"])
    assert result["flops_ratio"] > 60 and result["decode_ms"] > 0
    assert result["latent_pipeline_ms"] == pytest.approx(result["latent"]["loop_ms"] + result["decode_ms"])


@pytest.mark.parametrize("args, message", [
    (["--resolution", "100"], "resolution 100 is not a multiple of 64"),
    (["--resolution", "64", "--device", "tpu"], "unknown device 'tpu'"),
    (["--resolution", "64", "--threads", "0"], "threads is 0; use at least 1"),
])
def test_cli_bad_input_is_one_sentence_and_exit_code_2(args, message, capsys):
    before = torch.get_num_threads()
    assert cli.main(["bench", *args, "--steps", "1"]) == 2
    torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
