"""latentlab.bench: timing, FLOPs and memory on the meta device, and the memory that is really free.

No speed assertions: timed tests flake on a shared machine (a sleep sets the one lower bound checked).
"""

import time

import pytest
import torch

from latentlab import bench
from latentlab.blocks import Attention


def test_meta_count_matches_a_real_run_and_the_attention_formula():
    net = bench.conv_stack(in_channels=3, width=8, depth=3)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert bench.count_flops(net, x)["total"] == bench.conv_flops(net, x)  # meta == a real forward
    attn = Attention(64, heads=2, groups=8)
    counts = bench.count_flops(attn, torch.empty(1, 64, 16, 16, device="meta"))
    tokens = 16 * 16
    assert counts["attention"] == 2 * (2 * tokens * tokens * 64)  # q k^T and weights @ v, 2 FLOPs per multiply-add


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


def test_check_fits_refuses_with_one_sentence(monkeypatch):
    monkeypatch.setattr(bench, "available_memory", lambda device=None: 1_000_000_000)  # 1 GB free
    bench.check_fits(500_000_000, "cpu", "a pass")  # 1.6 x 0.5 GB fits in 0.9 GB
    with pytest.raises(bench.MemoryWontFit) as err:
        bench.check_fits(600_000_000, "cpu", "a pass at 4096x4096")  # 0.96 GB does not
    message = str(err.value)
    assert message.startswith("a pass at 4096x4096 needs about 960.0 MB but only 1.0 GB is free on cpu")
    assert "skipped" in message and message.count(". ") == 0 and "\n" not in message  # one sentence


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


def test_time_fn_keeps_every_run():
    timing = bench.time_fn(lambda: torch.ones(4).sum(), warmup=1, repeats=4, device="cpu")
    assert len(timing.times_ms) == 4 and timing.total_ms == pytest.approx(sum(timing.times_ms))
    q1, q3 = timing.quartiles_ms
    assert q1 <= timing.median_ms <= q3 and q3 - q1 == pytest.approx(timing.iqr_ms)


@pytest.mark.parametrize("nbytes, text", [(999, "999 B"), (1000, "1.0 KB"), (5_374_642_764, "5.4 GB"),
                                          (2.5e12, "2.5 TB")])
def test_format_bytes(nbytes, text):
    assert bench.format_bytes(nbytes) == text


def test_time_fn_reports_median_spread_and_memory():
    calls = []
    t = bench.time_fn(lambda: calls.append(time.sleep(0.01)), warmup=2, repeats=5, device="cpu")
    assert len(calls) == 7  # warm-up calls are made but not timed
    assert t.repeats == 5 and t.min_ms <= t.median_ms <= t.max_ms
    assert t.median_ms >= 9.5  # it really timed the sleep
    assert t.iqr_ms >= 0 and t.peak_bytes > 10 * 2**20 and t.device.startswith("cpu")
    assert "median" in str(t)


def test_conv_flops_ratio_of_a_conv_stack_follows_pixels():
    net3, net4 = bench.conv_stack(3, 8, 3), bench.conv_stack(4, 8, 3)
    f_pix = bench.conv_flops(net3, torch.zeros(1, 3, 64, 64))
    f_lat = bench.conv_flops(net4, torch.zeros(1, 4, 8, 8))
    # same inner width: the ratio is 64 positions x (3 vs 4 channels in the first and last layer)
    expected = (64 * 64 * 9 * 2 * (3 * 8 + 8 * 8 + 8 * 3)) / (8 * 8 * 9 * 2 * (4 * 8 + 8 * 8 + 8 * 4))
    assert f_pix / f_lat == pytest.approx(expected, rel=1e-6)
