"""latentlab.parallel and `latentlab train` on several processes: a real 2-process run on the CPU (gloo) through the
launchers a user types, `accelerate launch` and `torchrun`: both processes see different items, keep equal weights
(those saved), the manifest records the world size, and a run stopped by Ctrl-C or SIGTERM resumes from its last
step. The denoiser's run also trains on a folder and adapts its VAE with each process on its own items."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from latentlab.parallel import accelerator_for, precision, spread, weights_sha256

TINY_VAE = ["--steps", "24", "--batch-size", "1", "--crop", "16", "--block-out-channels", "8,16", "--norm-num-groups",
            "4", "--eval-size", "32", "--eval-every", "1000", "--checkpoint-every", "2", "--device", "cpu"]
BIN = Path(sys.executable).parent
ACCELERATE = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]  # every value given: no config file read
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]


def _env(tmp_path: Path) -> dict:
    """the tests' offline environment, one thread a process, and an empty HF_HOME: no accelerate config is read"""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONUNBUFFERED": "1"}


def _tensor_sha(path: Path) -> str:
    """weights_sha256 of a checkpoint's tensors, as if loaded into its model"""
    return weights_sha256(_Named(load_file(path)))


class _Named(torch.nn.Module):
    """a module whose state_dict is the given tensors, names unchanged"""

    def __init__(self, tensors: dict):
        super().__init__()
        self.tensors = tensors

    def state_dict(self, *args, **kwargs):
        return self.tensors


def test_precision_is_bf16_only_where_a_gpu_has_it_and_sha_sees_one_value():
    assert precision(torch.device("cpu"), "auto") == "no" and precision(torch.device("cpu"), "bf16") == "bf16"
    one = accelerator_for(torch.device("cpu"), "no", threads=1)
    assert (one.num_processes, one.process_index, one.is_main_process) == (1, 0, True) and spread(one) == ""
    a = torch.nn.Linear(2, 2)
    before = weights_sha256(a)
    with torch.no_grad():
        a.weight[0, 0] += 1e-6
    assert weights_sha256(a) != before


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)


def test_two_processes_share_the_work_save_process_0s_weights_and_resume_after_ctrl_c(tmp_path):
    out, state = tmp_path / "v.safetensors", tmp_path / "v.resume.safetensors"
    command = ["latentlab", "train", "vae", *TINY_VAE, "--out", str(out)]
    process = subprocess.Popen([*ACCELERATE, *command], cwd=tmp_path, env=_env(tmp_path), text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(state, process)  # the first checkpoint: training is under way on both processes
        assert state.exists(), "training did not start"
        process.send_signal(signal.SIGINT)  # Ctrl-C to the launcher, which passes it on to both processes
        _, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert "interrupted after" in err and "--resume yes continues" in err, err[-2000:]
    manifest = json.loads(out.with_suffix(".json").read_text())
    done, spread_ = manifest["steps_done"], manifest["processes"]
    assert manifest["interrupted"] is True and 2 <= done < 24 and state.exists()
    assert spread_["world_size"] == 2 and [p["rank"] for p in spread_["per_process"]] == [0, 1]
    first = [p["first_items"] for p in spread_["per_process"]]
    assert len(first[0]) == len(first[1]) == 1 and first[0] != first[1]  # each process its own part of the batch
    shas = {p["weights_sha256"] for p in spread_["per_process"]}
    assert shas == {_tensor_sha(out)}  # gradients synced: one set of weights, and it is the one saved

    resumed = subprocess.run([*TORCHRUN, *command, "--resume", "yes"], cwd=tmp_path, env=_env(tmp_path), text=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming after step {done}" in resumed.stderr
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["resumed_after"] == done and manifest["steps_done"] == 24 and manifest["interrupted"] is False
    assert manifest["processes"]["world_size"] == 2 and not state.exists()  # finished: nothing left to resume
    assert {p["weights_sha256"] for p in manifest["processes"]["per_process"]} == {_tensor_sha(out)}


def test_two_processes_adapt_the_vae_in_shards_train_on_a_folder_and_resume_after_sigterm(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate([(230, 20, 20), (20, 200, 40), (30, 60, 220)]):
        Image.new("RGB", (48, 40), colour).save(folder / f"p{i}.png")
    out, state = tmp_path / "d.safetensors", tmp_path / "d.resume.safetensors"
    command = ["latentlab", "train", "unet", "--data", str(folder), "--finetune-vae", "4", "--steps", "40",
               "--batch-size", "2", "--num-images", "8", "--image-size", "16", "--block-out-channels", "16,32",
               "--attention-head-dim", "16", "--norm-num-groups", "8", "--eval-samples", "2", "--eval-steps", "2",
               "--checkpoint-every", "2", "--device", "cpu", "--out", str(out)]
    process = subprocess.Popen([*ACCELERATE, *command], cwd=tmp_path, env=_env(tmp_path), text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(state, process)  # the denoiser's first checkpoint: its training is under way on both processes
        assert state.exists(), "training did not start"
        process.send_signal(signal.SIGTERM)  # a scheduler ending the job: the launcher passes it on to both
        _, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode != 0 and "interrupted after" in err and "--resume yes continues" in err, err[-2000:]
    manifest = json.loads(out.with_suffix(".json").read_text())
    done = manifest["steps_done"]
    assert manifest["interrupted"] is True and 2 <= done < 40 and state.exists()
    assert _saved_step(out) == _saved_step(state) == done  # saved whole at the step it stopped after
    adapted = json.loads((tmp_path / "d_vae.json").read_text())["processes"]
    first = [p["first_items"] for p in adapted["per_process"]]
    assert adapted["world_size"] == 2 and len(first[0]) == len(first[1]) == 8 and first[0] != first[1]
    assert {p["weights_sha256"] for p in adapted["per_process"]} == {_tensor_sha(tmp_path / "d_vae.safetensors")}

    resumed = subprocess.run([*TORCHRUN, *command, "--resume", "yes", "--checkpoint-every", "1000"], cwd=tmp_path,
                             env=_env(tmp_path), text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming after step {done}" in resumed.stderr
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["resumed_after"] == done and manifest["steps_done"] == 40 and manifest["interrupted"] is False
    assert manifest["quality"]["judged"] is False and (tmp_path / "d_samples.png").exists() and not state.exists()
    assert {p["weights_sha256"] for p in manifest["processes"]["per_process"]} == {_tensor_sha(out)}


def _saved_step(path: Path) -> int:
    from latentlab.checkpoints import read_checkpoint

    return int(read_checkpoint(path)[1]["step"])


def test_two_processes_download_an_archive_once_and_both_train_on_it(tmp_path):
    """--data-url under a launcher: the main process downloads and unpacks, the other waits and finds the folder
    (before, each process fetched the archive itself: two downloads racing into one cache)"""
    import zipfile
    from io import BytesIO

    from PIL import Image

    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, colour in enumerate([(230, 20, 20), (20, 200, 40), (30, 60, 220)]):
            png = BytesIO()
            Image.new("RGB", (48, 40), colour).save(png, format="PNG")
            zf.writestr(f"p{i}.png", png.getvalue())
    out = tmp_path / "v.safetensors"
    env = {**_env(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = ["latentlab", "train", "vae", *TINY_VAE, "--steps", "2", "--data-url", archive.as_uri(), "--out", str(out)]
    done = subprocess.run([*ACCELERATE, *command], cwd=tmp_path, env=env, text=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("downloaded 0.0 MB from file://") == 1, done.stderr[-2000:]
    assert done.stderr.count("unpacked 3 images into") == 1
    unpacked = list((tmp_path / "cache" / "latentlab" / "data").iterdir())
    assert len(unpacked) == 1 and len(list(unpacked[0].iterdir())) == 3
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["processes"]["world_size"] == 2 and f"3 images from {unpacked[0]}" in manifest["data"]
