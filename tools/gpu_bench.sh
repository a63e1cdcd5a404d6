#!/usr/bin/env bash
# The GPU column of docs/benchmarks-pixel-vs-latent.md: one short prepared run of `latentlab bench` on CUDA.
#
#     bash tools/gpu_bench.sh OUT_DIR
#
# Run it from a Python environment that already has a CUDA build of torch (set PYTHON=... to pick one).
# It installs nothing but this repository (`pip install -e .`, skipped when that fails, e.g. offline: the
# source tree is used instead), then writes to OUT_DIR: the default comparison and the resolution sweep, in
# fp32 and bf16 (and a bf16 sweep up to 2048), as JSON, plus the GPU's name and the versions.
# About a minute on an H100; each run is cut at 55 s, so the whole script stays under 5 minutes.
set -euo pipefail

out="${1:?usage: bash tools/gpu_bench.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"

"$py" -m pip install --quiet -e . >"$out/pip.log" 2>&1 || echo "pip install -e . failed (see $out/pip.log); using the source tree"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1

"$py" - >"$out/versions.json" <<'PY'
import json, platform, torch
assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(),
                  "bf16": torch.cuda.is_bf16_supported(), "python": platform.python_version()}))
PY
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >"$out/nvidia-smi.csv" 2>&1 || true

bench() {  # NAME ARGS...: one run, its JSON to NAME.json and its messages to NAME.log; a failure does not stop the rest
    local name="$1"; shift
    echo "latentlab bench $*"
    timeout 55 "$py" -m latentlab bench --device cuda "$@" --json >"$out/$name.json" 2>"$out/$name.log" \
        || echo "  failed (exit $?): see $out/$name.log"
}
for dtype in fp32 bf16; do
    bench "bench_cuda_$dtype" --dtype "$dtype"
    bench "sweep_cuda_$dtype" --dtype "$dtype" --sweep
done
bench sweep_cuda_bf16_2048 --dtype bf16 --sweep --resolution 2048  # where attention takes over
ls -l "$out"
