"""Save the PNG figures of an executed notebook (e.g. one written by bench_notebooks.py --keep) for review.

    python tools/nb_figures.py EXECUTED.ipynb OUTDIR
"""

import base64
import sys
from pathlib import Path

import nbformat


def main() -> int:
    nb_path, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(nb_path, as_version=4)
    count = 0
    for i, cell in enumerate(nb.cells):
        for j, output in enumerate(cell.get("outputs", [])):
            png = output.get("data", {}).get("image/png")
            if png:
                (out / f"{nb_path.stem}_cell{i:02d}_{j}.png").write_bytes(base64.b64decode(png))
                count += 1
    print(f"{count} figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
