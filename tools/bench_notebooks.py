"""Run every lesson notebook from a fresh kernel and report pass/fail, wall time and peak memory.

    python tools/bench_notebooks.py [NOTEBOOK ...] [--full] [--record FILE] [--keep DIR] [--json]

Quick mode (LATENTLAB_QUICK=1) by default: the numbers in docs/benchmarks.md (`make bench-notebooks`). `--full`
runs the real lessons (LATENTLAB_QUICK unset), as a learner gets them: `make test-full` does that offline and
records the result with `--record docs/notebooks-full.md`. Peak memory is the highest resident set size of the
kernel process (and its children), sampled every 50 ms. Binder gives a learner about 2 GB; the course's target is
under 1.5 GB per notebook. Exit status 1 when any notebook fails.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
TARGET_GB = 1.5


class PeakRSS:
    """samples the resident memory of a process tree in a background thread"""

    def __init__(self, pid: int, interval_s: float = 0.05):
        self.process, self.interval_s, self.peak = psutil.Process(pid), interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        try:
            procs = [self.process, *self.process.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs)
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval_s)

    def start(self) -> "PeakRSS":
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_notebook(path: Path, keep: Path | None = None, timeout: int = 1800) -> dict:
    """execute one notebook in a fresh kernel -> {notebook, seconds, peak_gb, ok, error}"""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    result = {"notebook": path.name, "ok": True, "error": None}
    start = time.perf_counter()
    with client.setup_kernel():
        sampler = PeakRSS(client.km.provisioner.process.pid).start()
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
        except Exception as err:  # noqa: BLE001 - report any failing cell and go on to the next notebook
            result.update(ok=False, error=f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:300]}")
        finally:
            peak = sampler.stop()
    result.update(seconds=round(time.perf_counter() - start, 1), peak_gb=round(peak / 2**30, 2))
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, keep / path.name)
    return result


def set_mode(full: bool) -> str:
    """the mode every kernel started from here inherits -> its name"""
    if full:
        os.environ.pop("LATENTLAB_QUICK", None)
        return "full"
    os.environ["LATENTLAB_QUICK"] = "1"
    return "quick"


def offline() -> str:
    """how this run was kept off the network, in words"""
    guard = (ROOT / "tests" / "offline").resolve()
    guarded = any(p and Path(p).resolve() == guard for p in os.environ.get("PYTHONPATH", "").split(os.pathsep))
    said = [name for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY") if os.environ.get(name)]
    if guarded:
        said.append("the tests' network guard in every kernel")
    return ", ".join(said) if said else "no (the network was allowed)"


def record(path: Path, rows: list[dict], mode: str, started: datetime.datetime) -> None:
    """the run as a markdown page (replaced whole, atomically): machine, mode, one row per notebook"""
    import torch

    device = "CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
    total = sum(r["seconds"] for r in rows)
    failed = [r for r in rows if not r["ok"]]
    lines = [
        f"# Every notebook in {mode} mode: the last run",
        "",
        f"Written by `python tools/bench_notebooks.py{' --full' if mode == 'full' else ''} --record {shown}` "
        "(`make test-full`); each notebook runs from a fresh kernel, top to bottom, with its outputs discarded.",
        "",
        f"- started {started:%Y-%m-%d %H:%M} UTC; {len(rows)} notebooks, {len(rows) - len(failed)} passed, "
        f"{len(failed)} failed; {total / 60:.1f} min in all",
        f"- mode: {mode} (LATENTLAB_QUICK={os.environ.get('LATENTLAB_QUICK', 'unset')}); offline: {offline()}",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPU cores, {psutil.virtual_memory().total / 2**30:.0f} GB"
        f" memory, {device}; Python {platform.python_version()}, torch {torch.__version__}",
        f"- load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}" if hasattr(os, "getloadavg")
        else "- load average: not available here",
        "",
        "| notebook | result | wall time | peak memory |",
        "|---|---|---|---|",
        *[f"| {r['notebook']} | {'pass' if r['ok'] else 'FAIL: ' + r['error'].replace('|', '/')} | "
          f"{r['seconds']:.1f} s | {r['peak_gb']:.2f} GB{' (over the target)' if r['peak_gb'] >= TARGET_GB else ''} |"
          for r in rows],
        "",
    ]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb")
    parser.add_argument("--full", action="store_true", help="the real lessons: LATENTLAB_QUICK unset (long)")
    parser.add_argument("--record", type=Path, help="write the results as a markdown page, e.g. docs/notebooks-full.md")
    parser.add_argument("--keep", type=Path, help="write the executed notebooks (with outputs) into this folder")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    mode, started = set_mode(args.full), datetime.datetime.now(datetime.UTC)
    if not args.json:
        print(f"{len(paths)} notebooks in {mode} mode; offline: {offline()}", flush=True)
    rows = []
    for path in paths:
        row = run_notebook(path.resolve(), args.keep)
        rows.append(row)
        if not args.json:
            flag = "" if row["peak_gb"] < TARGET_GB else f"  over the {TARGET_GB} GB target"
            status = "ok" if row["ok"] else f"FAILED: {row['error']}"
            print(f"{row['notebook']:<40} {row['seconds']:>7.1f} s  {row['peak_gb']:>5.2f} GB  {status}{flag}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    if args.record:
        record(args.record, rows, mode, started)
        print(f"recorded in {args.record}", flush=True)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
