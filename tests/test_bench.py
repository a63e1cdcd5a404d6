"""latentlab.bench (FLOPs and memory on the meta device) and latentlab.compare (`latentlab bench`).

No timing assertions: timed tests flake on a shared machine. The speed-up targets live in the benchmark's
output and in docs/benchmarks-pixel-vs-latent.md.
"""

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from latentlab import bench, cli, compare
from latentlab.blocks import Attention
from latentlab.errors import InputError
from latentlab.unet import UNet

CONV_ONLY = replace(  # the benchmark UNet without any attention: every layer's cost follows the positions
    compare.BENCH_UNET,
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
    flops = compare.step_flops(512, 8, CONV_ONLY)
    assert flops["pixel_attention_share"] == 0 and flops["latent_attention_share"] == 0
    assert flops["flops_ratio"] == pytest.approx(64, rel=0.01)
    assert flops["flops_ratio"] < 64  # the 4-channel latent side does a little more per position, not less


def test_conv_only_ratio_at_equal_channels_is_64_up_to_the_time_mlp():
    """with 4 channels on both sides, only the time embedding (the same on both) keeps the ratio from 64 exactly"""
    model = UNet(compare.unet_config(4, CONV_ONLY))
    big = bench.count_flops(model, torch.empty(1, 4, 256, 256, device="meta"), 10)["total"]
    small = bench.count_flops(model, torch.empty(1, 4, 32, 32, device="meta"), 10)["total"]
    time_mlp = bench.count_flops(model.time_embedding, torch.empty(1, 32, device="meta"))["total"]
    assert (big - time_mlp) / (small - time_mlp) == pytest.approx(64, rel=1e-3)  # the projections per ResBlock too


def test_attention_makes_the_ratio_exceed_64_and_its_share_grow():
    """q k^T has tokens^2 entries: at factor 8 the attention work falls 8^4 = 4096-fold, the rest 64-fold"""
    small, large = compare.step_flops(128, 8), compare.step_flops(1024, 8)
    assert small["flops_ratio"] > 64 and large["flops_ratio"] > small["flops_ratio"]
    assert large["pixel_attention_share"] > small["pixel_attention_share"]


def test_meta_count_matches_a_real_run_and_the_attention_formula():
    net = bench.conv_stack(in_channels=3, width=8, depth=3)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert bench.count_flops(net, x)["total"] == bench.conv_flops(net, x)  # meta == a real forward
    attn = Attention(64, heads=2, groups=8)
    counts = bench.count_flops(attn, torch.empty(1, 64, 16, 16, device="meta"))
    tokens = 16 * 16
    assert counts["attention"] == 2 * (2 * tokens * tokens * 64)  # q k^T and weights @ v, 2 FLOPs per multiply-add


# ---- memory


def test_memory_estimate_of_one_conv_is_weights_input_and_output():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    need = bench.estimate_memory(conv, torch.empty(1, 3, 32, 32, device="meta"))
    assert need == 4 * ((8 * 3 * 9 + 8) + 3 * 32 * 32 + 8 * 32 * 32)


def test_memory_estimate_counts_the_score_matrix_only_for_the_plain_kernel():
    attn = Attention(64, heads=2, groups=8)
    x = torch.empty(1, 64, 32, 32, device="meta")
    scores = 2 * 2 * (32 * 32) ** 2 * 4  # twice (B, heads, T, T) floats
    fused, plain = bench.estimate_memory(attn, x), bench.estimate_memory(attn, x, fused_attention=False)
    assert fused < scores / 4 < plain - fused <= scores


def test_memory_estimate_refuses_an_absurd_size_with_one_sentence():
    model = UNet(compare.unet_config(3))
    need = bench.estimate_memory(model, torch.empty(1, 3, 65536, 65536, device="meta"), 10)
    assert need > 10**12  # terabytes: the 65536 x 65536 activations alone
    with pytest.raises(bench.MemoryWontFit) as err:
        bench.check_fits(need, "cpu", "pixel space at 65536x65536x3")
    message = str(err.value)
    assert message.startswith("pixel space at 65536x65536x3 needs about") and "skipped" in message
    assert message.count(". ") == 0 and "\n" not in message  # one sentence


def test_compare_skips_what_does_not_fit_instead_of_running_it():
    result = compare.compare(resolution=65536, factor=8, steps=1, device="cpu")
    assert result.pixel_ms_per_step is None and result.latent_ms_per_step is None and result.speedup is None
    assert len(result.skipped) == 2 and all("needs about" in s for s in result.skipped)
    assert result.flops_ratio > 64  # counting costs nothing, so it is still reported


def test_container_limit_caps_available_memory(tmp_path, monkeypatch):
    """Binder-like cgroup v2: 2 GB limit, 0.5 GB used of which 0.1 GB is reclaimable file cache"""
    (tmp_path / "memory.max").write_text("2000000000\n")
    (tmp_path / "memory.current").write_text("500000000\n")
    (tmp_path / "memory.stat").write_text("anon 400000000\ninactive_file 100000000\n")
    monkeypatch.setattr(bench, "CGROUP_ROOT", tmp_path)
    assert bench._cgroup_free() == 1_600_000_000
    assert bench.available_memory("cpu") <= 1_600_000_000
    (tmp_path / "memory.max").write_text("max\n")
    assert bench._cgroup_free() is None


# ---- the loop, the sizes, the command line


def test_ddim_loop_with_the_true_noise_returns_the_clean_image():
    """DDIM with eta = 0 is exact when the model predicts the noise that was added (Song et al. 2021, eq. 12)"""
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1, torch.randn(1, 3, 8, 8, generator=g)
    loop = compare.DDIMLoop(lambda x, t: noise, x0, steps=5, warmup=2)
    a_first = loop.alphas[0]
    loop.x = a_first**0.5 * x0 + (1 - a_first) ** 0.5 * noise  # x_T for the first timestep
    start = loop.x.clone()
    loop(), loop()  # warm-up calls leave the sample where it was
    assert torch.equal(loop.x, start)
    for _ in range(5):
        out = loop()
    assert torch.allclose(out, x0, atol=1e-5)


def test_time_fn_keeps_every_run():
    timing = bench.time_fn(lambda: torch.ones(4).sum(), warmup=1, repeats=4, device="cpu")
    assert len(timing.times_ms) == 4 and timing.total_ms == pytest.approx(sum(timing.times_ms))
    q1, q3 = timing.quartiles_ms
    assert q1 <= timing.median_ms <= q3 and q3 - q1 == pytest.approx(timing.iqr_ms)


def test_sizes_and_bad_input():
    assert compare.sweep_sizes(512, 8) == [64, 128, 256, 512]
    assert compare.check_sizes(512, 8) == 64
    with pytest.raises(InputError, match="resolution 500 is not a multiple of 64 .* such as 512"):
        compare.check_sizes(500, 8)
    with pytest.raises(InputError, match="factor 6 is not a power of two"):
        compare.check_sizes(512, 6)
    with pytest.raises(InputError, match="fp16 timing is meant for GPUs"):
        compare.compare(resolution=64, device="cpu", dtype="fp16")
    with pytest.raises(InputError, match="unknown device"):
        compare.compare(resolution=64, device="tpu")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "latentlab", "bench", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_json_has_the_contract_keys():
    out = _cli("--resolution", "64", "--factor", "8", "--steps", "1", "--device", "cpu", "--threads", "1", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)  # one JSON object, nothing else on stdout
    assert CONTRACT_KEYS <= set(result)
    assert result["device"].startswith("cpu") and result["resolution"] == 64 and result["factor"] == 8
    assert result["latent_shape"] == [1, 4, 8, 8]
    assert result["speedup"] == pytest.approx(result["pixel_ms_per_step"] / result["latent_ms_per_step"])
    assert result["flops_ratio"] > 60 and result["decode_ms"] > 0
    assert result["latent_pipeline_ms"] == pytest.approx(result["latent_total_ms"] + result["decode_ms"])


@pytest.mark.parametrize("args, message", [
    (["--resolution", "100"], "resolution 100 is not a multiple of 64"),
    (["--resolution", "64", "--device", "tpu"], "unknown device 'tpu'"),
])
def test_cli_bad_input_is_one_sentence_and_exit_code_2(args, message, capsys):
    assert cli.main(["bench", *args, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_plot_sweep_draws_time_memory_and_ratio():
    results = []
    for n, pixel_ms in ((64, 20.0), (128, 80.0)):
        r = compare.Comparison("cpu (2 threads)", "fp32", n, 8, 3, [1, 3, n, n], [1, 4, n // 8, n // 8], 1)
        r.pixel_ms_per_step, r.pixel_iqr_ms, r.latent_ms_per_step, r.latent_iqr_ms = pixel_ms, 1.0, 2.0, 0.1
        r.speedup, r.speedup_low, r.speedup_high, r.flops_ratio = pixel_ms / 2, pixel_ms / 2.5, pixel_ms / 1.5, 64.5
        r.pixel_memory_mb, r.latent_memory_mb, r.pixel_estimate_mb, r.latent_estimate_mb = 10.0, 1.0, 12.0, 1.5
        results.append(r)
    fig = compare.plot_sweep(results)
    assert len(fig.axes) == 3 and all(ax.get_xscale() == "log" for ax in fig.axes)
    assert "cpu (2 threads)" in fig._suptitle.get_text()
