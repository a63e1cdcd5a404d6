"""latentlab.doctor: offline it answers fast and says why, it checks each shipped file against its manifest, and
`latentlab doctor --json` runs as a real process."""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

from huggingface_hub import constants as hub_constants

from latentlab import checkpoints, doctor


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


def test_doctor_checks_the_compression_sweep_too(tmp_path, monkeypatch, capsys):
    from latentlab import sweep

    assert doctor.report(timeout=0.1)["sweep_problem"] is None  # the sweep ships with the course
    shutil.copytree(sweep.SWEEP_DIR, tmp_path / "sweep")
    monkeypatch.setattr(sweep, "SWEEP_DIR", tmp_path / "sweep")
    path = tmp_path / "sweep" / "denoiser_f16c4.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    problem = doctor.report(timeout=0.1)["sweep_problem"]
    assert "denoiser_f16c4" in problem and "corrupt" in problem and "`make sweep`" in problem
    assert doctor.run(argparse.Namespace(json=False, timeout=0.1)) == 1
    assert "denoiser_f16c4" in capsys.readouterr().err


def test_doctor_command_runs_offline():
    out = subprocess.run(
        [sys.executable, "-m", "latentlab", "doctor", "--json"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["hub_reachable"] is False and info["versions"]["torch"] and info["device"]
