"""device, mode, bench, doctor and the command line."""

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch
from huggingface_hub import constants as hub_constants

from latentlab import bench, checkpoints, device, doctor, mode
from latentlab.errors import InputError


def test_quick_mode_switch(monkeypatch):
    monkeypatch.setenv("LATENTLAB_QUICK", "1")
    assert mode.quick() and mode.by_mode(full=1000, quick=10) == 10
    monkeypatch.setenv("LATENTLAB_QUICK", "0")
    assert not mode.quick() and mode.by_mode(full=1000, quick=10) == 1000
    monkeypatch.delenv("LATENTLAB_QUICK")
    assert mode.by_mode(full="real", quick="small") == "real"


def test_pick_device_and_overrides(monkeypatch):
    assert device.pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LATENTLAB_DEVICE", "cpu")
    assert device.pick_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            device.pick_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        device.pick_device("tpu-please")


def test_seed_everything_repeats():
    a = torch.randn(4, generator=device.seed_everything(3))
    b = torch.randn(4, generator=device.seed_everything(3))
    assert torch.equal(a, b)


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert device.set_threads(1) == 1
    finally:
        torch.set_num_threads(before)


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


def test_doctor_offline_is_fast_and_says_why(monkeypatch):
    """doctor asks the hub the way lesson 09 does (sd.hub_unreachable); a refused endpoint fails at once, with no DNS"""
    start = time.perf_counter()
    info = doctor.report(timeout=1.0)
    assert info["hub_reachable"] is False and "HF_HUB_OFFLINE" in info["hub"]  # conftest sets it
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as s:  # a loopback port nobody listens on: refused at once, whatever the resolver does
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(hub_constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    info = doctor.report(timeout=1.0)
    assert info["hub_reachable"] is False and info["hub"].startswith("127.0.0.1 cannot be reached")
    assert time.perf_counter() - start < 10
    assert not hasattr(doctor, "hub_reachable")  # one hub check, in latentlab.sd


def test_doctor_verifies_each_weights_file_against_its_manifest(tmp_path, monkeypatch, capsys):
    for name in ("vae", "denoiser"):
        for suffix in (".safetensors", ".json"):
            shutil.copy(checkpoints.WEIGHTS_DIR / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    monkeypatch.setattr(checkpoints, "WEIGHTS_DIR", tmp_path)
    assert doctor.report(timeout=0.1)["course_weights"] == ["denoiser", "vae"]
    data = bytearray((tmp_path / "vae.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the file is present, and wrong
    (tmp_path / "vae.safetensors").write_bytes(bytes(data))
    info = doctor.report(timeout=0.1)
    assert info["course_weights"] == ["denoiser"]
    assert "corrupt" in info["weights_problems"]["vae"] and "`make weights`" in info["weights_problems"]["vae"]
    assert doctor.run(argparse.Namespace(json=False, timeout=0.1)) == 1
    assert "vae weights at" in capsys.readouterr().err


def test_doctor_command_runs_offline():
    out = subprocess.run(
        [sys.executable, "-m", "latentlab", "doctor", "--json"], capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["hub_reachable"] is False and info["versions"]["torch"] and info["device"]


@pytest.mark.parametrize("command, words", [
    (["reconstruct", "/nonexistent/photo.png"], "/nonexistent/photo.png"),
    (["bench", "--device", "tpu-please"], "tpu-please"),
])
def test_cli_reports_bad_input_in_one_line(command, words):
    """a real process, as a learner sees it: exit 2 and one line on stderr that names the command and the input"""
    out = subprocess.run([sys.executable, "-m", "latentlab", *command], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{out.stderr}"
    assert lines[0].startswith(f"latentlab {command[0]}: ") and words in lines[0]
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_cli_unknown_command_is_a_usage_error_not_a_traceback(capsys):
    from latentlab import cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["no-such-command"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "invalid choice" in err and "no-such-command" in err and "Traceback" not in err
