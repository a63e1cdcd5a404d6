"""Run every lesson notebook from a fresh kernel and report its wall time and peak memory.

    python tools/bench_notebooks.py [NOTEBOOK ...] [--keep DIR] [--json]

Peak memory is the highest resident set size of the kernel process (and its children), sampled every 50 ms.
Run it with LATENTLAB_QUICK=1 for the quick-mode numbers recorded in docs/benchmarks.md. Binder gives a
learner about 2 GB; the course's target is under 1.5 GB per notebook.
"""

import argparse
import json
import sys
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb")
    parser.add_argument("--keep", type=Path, help="write the executed notebooks (with outputs) into this folder")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
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
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
