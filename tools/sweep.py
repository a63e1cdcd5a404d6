"""Run lesson 10's compression sweep (recipes/sweep/, issue 16) on two CPU threads: `make sweep`.

The six VAEs train in two chains at once (one thread each: 4-channel geometries in one, 16-channel in the other);
then the six latent denoisers train in pairs of the same factor, at the same time, so that the two members of a pair
share the machine's load during their equal time budgets. Every stage is one `latentlab train recipe` run; logs go
to build/sweep-logs/, weights and manifests to latentlab/weights/sweep/ (or --out-dir). --smoke: seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "recipes" / "sweep"
CHAINS = [["f4c4", "f8c4", "f16c4"], ["f4c16", "f8c16", "f16c16"]]


def launch(files: list[Path], out_dir: Path, log: Path, smoke: bool) -> subprocess.Popen:
    command = [sys.executable, "-m", "latentlab", "train", "recipe", *map(str, files), "--out-dir", str(out_dir),
               "--device", "cpu", *(["--smoke"] if smoke else [])]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)


def wait_all(runs: list[subprocess.Popen], what: str) -> None:
    codes = [run.wait() for run in runs]
    if any(codes):
        sys.exit(f"sweep: {what} failed (exit codes {codes}); see build/sweep-logs/.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "latentlab" / "weights" / "sweep")
    parser.add_argument("--smoke", action="store_true", help="every stage shrunk: seconds, to test the chain")
    args = parser.parse_args(argv)
    logs = ROOT / "build" / "sweep-logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    wait_all([launch([SWEEP / f"vae_{g}.toml" for g in chain], args.out_dir, logs / f"vae_chain{i}.log", args.smoke)
              for i, chain in enumerate(CHAINS)], "a VAE chain")
    print(f"sweep: six VAEs in {time.perf_counter() - start:.0f} s", flush=True)
    for pair in zip(*CHAINS):
        wait_all([launch([SWEEP / f"denoiser_{g}.toml"], args.out_dir, logs / f"denoiser_{g}.log", args.smoke)
                  for g in pair], f"the denoisers {pair}")
        print(f"sweep: denoisers {' and '.join(pair)} done at {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
