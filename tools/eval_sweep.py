"""Lesson 10's compression sweep, measured: writes docs/compression-sweep.json and the tables of its page (issue 16).

    .venv/bin/python tools/eval_sweep.py      # after `make sweep`: the weights in latentlab/weights/sweep/, minutes
    .venv/bin/python tools/eval_sweep.py --weights-dir build/sweep --json /tmp/sweep.json --page /tmp/sweep.md

Every number comes from `latentlab.sweep.measure`, on one CPU: per VAE, PSNR on the validation photos (which may
choose) and the test photos (which only report) at 256x256 beside bicubic at the latent's number of values, and the
ColorChecker; per denoiser, FLOPs per step on its latent (meta device) and the time of one step on one thread
(interleaved rounds, ratios to f8c4 from the same run), the judge's result from its manifest, and its VAE's ceiling
(the judge on reconstructions of held-out real shapes). Wall times per stage are read from the manifests.

The page's prose is written by hand; the tool rewrites only what sits between `<!-- sweep:NAME -->` and
`<!-- /sweep:NAME -->` (NAME: run, training, vaes, denoisers, classes, ldm, findings).
"""

import argparse
import datetime
import json
import re
import sys
from pathlib import Path

import torch

from latentlab import sweep
from latentlab.data import SHAPE_CLASSES
from latentlab.device import describe
from latentlab.errors import InputError
from latentlab.recipes import git_commit

ROOT = Path(__file__).resolve().parent.parent


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def blocks(result: dict) -> dict[str, str]:
    """the page's generated parts, each a Markdown table or list, from measure()'s result"""
    rows, out = result["geometries"], {}
    smoke = any(r["vae_training"]["smoke"] or r["denoiser_training"]["smoke"] for r in rows.values())
    out["run"] = (f"Measured {result['date']} at commit `{result['git_commit']}` on {result['device']}; photos at "
                  f"{result['size']}x{result['size']}, {result['shapes']} held-out shapes per ceiling, steps timed on "
                  f"a batch of {result['batch']} latents." + (
                      "\n\n**Smoke-test weights (2 training steps each): every number here is meaningless.**"
                      if smoke else ""))
    lines = ["| geometry | VAE steps | VAE wall time | denoiser steps | denoiser wall time | judge's sampling |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        v, d = r["vae_training"], r["denoiser_training"]
        lines.append(f"| {name} | {v['steps_done']:,} | {v['wall_time_s']:,.0f} s | {d['steps_done']:,} | "
                     f"{d['wall_time_s']:,.0f} s | {r['judged']['sampling_s']:,.0f} s |")
    total = sum(r["vae_training"]["wall_time_s"] + r["denoiser_training"]["wall_time_s"] for r in rows.values())
    out["training"] = "\n".join(lines + ["", f"All twelve stages: {total / 3600:.2f} hours of one thread each "
                                             "(two ran at a time)."])
    lines = ["| geometry | latent of 256² | values per pixel (fewer) | VAE parameters | test PSNR, VAE / bicubic | "
             "validation PSNR, VAE / bicubic | ColorChecker mean / worst (/255) |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        g, rec = sweep.parse(name), r["reconstruction"]
        db = {s: f"{sweep.mean_db(rec, s):.2f} / {sweep.mean_db(rec, s, 'bicubic'):.2f} dB" for s in ("test", "validation")}
        lines.append(f"| {name} | {g.channels}×{256 // g.factor}×{256 // g.factor} | {g.per_pixel} "
                     f"({g.compression:g}×) | {r['vae_parameters']:,} | {db['test']} | {db['validation']} | "
                     f"{rec['chart']['mean']:.1f} / {rec['chart']['worst']:.1f} |")
    out["vaes"] = "\n".join(lines)
    lines = [f"| geometry | latent of 64² | GFLOPs per step (× f8c4) | ms per step, 1 thread (× f8c4) | "
             f"steps in {rows['f8c4']['denoiser_training']['time_budget_s']:.0f} s | judged: as asked / recognised | "
             "ceiling: VAE on real shapes |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        j, c = r["judged"], r["ceiling"]
        lines.append(f"| {name} | {'×'.join(map(str, r['latent']))} | {r['flops']['gflops']:.4f} "
                     f"({r['flops_vs_f8c4']:.2f}×) | {r['time']['ms']:.1f} ({r['time_vs_f8c4']:.2f}×) | "
                     f"{r['denoiser_training']['steps_done']:,} | {_pct(j['as_asked'])} / {_pct(j['recognised'])} | "
                     f"{_pct(c['recognised'])} ({c['psnr_db']:.1f} dB) |")
    out["denoisers"] = "\n".join(lines)
    lines = ["| geometry | " + " | ".join(SHAPE_CLASSES) + " |", "|---|" + "---|" * len(SHAPE_CLASSES)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(_pct(r["judged"]["per_class"][k]) for k in SHAPE_CLASSES) + " |")
    out["classes"] = "\n".join(lines)
    lines = ["| autoencoder | geometry | values per pixel (fewer) | PSNR |", "|---|---|---|---|"]
    beside = [(sweep.parse(n), "LDM, KL (their validation images, converged)", f"{db:.2f} dB")
              for n, db in sweep.LDM_KL.items()]
    beside += [(sweep.parse(n), f"course sweep (test photos, {r['vae_training']['steps_done']:,} steps)",
                f"{sweep.mean_db(r['reconstruction']):.2f} dB") for n, r in rows.items()]
    for g, who, db in sorted(beside, key=lambda item: (item[0].compression, item[0].factor)):
        lines.append(f"| {who} | {g.name} | {g.per_pixel} ({g.compression:g}×) | {db} |")
    out["ldm"] = "\n".join(lines)
    out["findings"] = "\n".join(f"- {line}" for line in findings(rows))
    return out


def findings(rows: dict) -> list[str]:
    """the sentences the numbers support, computed (never hand-written)"""
    test = {n: sweep.mean_db(r["reconstruction"]) for n, r in rows.items()}
    best = max(test, key=test.get)
    fewer, beaten = {n: sweep.parse(n).compression for n in rows}, sweep.inversions(test)
    out = [f"Best test-photo PSNR: {best} ({test[best]:.2f} dB); worst: {min(test, key=test.get)} "
           f"({min(test.values()):.2f} dB).",
           "PSNR falls as the values per pixel fall, as in the LDM table." if not beaten else
           f"PSNR does not fall steadily with the values per pixel: {len(beaten)} pairs go the other way, e.g. "
           f"{beaten[0][0]} ({fewer[beaten[0][0]]:g}× fewer values) beats {beaten[0][1]} "
           f"({fewer[beaten[0][1]]:g}× fewer) by {test[beaten[0][0]] - test[beaten[0][1]]:.2f} dB."]
    for a, b in (("f4c4", "f8c16"), ("f8c4", "f16c16")):
        side = sweep.parse(b).factor // sweep.parse(a).factor
        out.append(f"Equal values ({sweep.parse(a).compression:g}× fewer): {a} {test[a]:.2f} dB, {b} {test[b]:.2f} dB "
                   f"({test[b] - test[a]:+.2f} dB for a latent {side}× smaller per side with {side**2}× the channels).")
    per_halving = [rows[f"f{f}c{c}"]["flops"]["gflops"] / rows[f"f{2 * f}c{c}"]["flops"]["gflops"]
                   for c in (4, 16) for f in (4, 8)]
    out.append(f"Halving the latent's side divides a denoiser step's FLOPs by {min(per_halving):.2f}-"
               f"{max(per_halving):.2f}; 16 channels instead of 4 add "
               f"{100 * max(rows[f'f{f}c16']['flops']['gflops'] / rows[f'f{f}c4']['flops']['gflops'] - 1 for f in (4, 8, 16)):.0f}% "
               "at most (only the first and last convolutions see them).")
    flops, times = (rows["f4c4"]["flops"]["gflops"] / rows["f16c4"]["flops"]["gflops"],
                    rows["f4c4"]["time"]["ms"] / rows["f16c4"]["time"]["ms"])
    out.append(f"f4c4 against f16c4: {flops:.1f}× the FLOPs per step, {times:.1f}× the time on one thread.")
    judged = {n: r["judged"]["as_asked"] for n, r in rows.items()}
    top = max(judged, key=judged.get)
    out.append(f"Most samples drawn as asked: {top} ({_pct(judged[top])}); fewest: {min(judged, key=judged.get)} "
               f"({_pct(min(judged.values()))}). Ceilings (the VAE alone on real shapes): "
               + ", ".join(f"{n} {_pct(r['ceiling']['recognised'])}" for n, r in rows.items()) + ".")
    steps = {n: r["denoiser_training"]["steps_done"] for n, r in rows.items()}
    out.append(f"In the same time budget the denoisers took {min(steps.values()):,} ({min(steps, key=steps.get)}) to "
               f"{max(steps.values()):,} ({max(steps, key=steps.get)}) steps.")
    return out


def fill(page: str, parts: dict[str, str]) -> str:
    """the page with each <!-- sweep:NAME --> ... <!-- /sweep:NAME --> block replaced; InputError if one is missing"""
    for name, text in parts.items():
        pattern = re.compile(rf"(<!-- sweep:{name} -->\n).*?(\n<!-- /sweep:{name} -->)", re.S)
        if not pattern.search(page):
            raise InputError(f"the page has no <!-- sweep:{name} --> ... <!-- /sweep:{name} --> block; add one.")
        page = pattern.sub(lambda m, text=text: m[1] + text + m[2], page)
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, default=sweep.SWEEP_DIR, help="where `make sweep` wrote them")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "compression-sweep.json", help="all numbers")
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "compression-sweep.md", help="its tables")
    parser.add_argument("--size", type=int, default=256, help="photos are resized and cropped to this side")
    parser.add_argument("--patch", type=int, default=64, help="ColorChecker patch side in pixels")
    parser.add_argument("--shapes", type=int, default=128, help="held-out shapes per VAE ceiling")
    parser.add_argument("--batch", type=int, default=32, help="latents per timed step (the training batch)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per geometry and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    args = parser.parse_args(argv)
    try:
        problem = sweep.missing(args.weights_dir)
        if problem:
            raise InputError(problem)
        page = args.page.read_text()
        result = {"date": datetime.date.today().isoformat(), "git_commit": git_commit(),
                  "device": describe(torch.device("cpu")), "size": args.size, "patch": args.patch,
                  "shapes": args.shapes, "batch": args.batch, "ldm_kl_psnr_db": sweep.LDM_KL,
                  **sweep.measure(args.weights_dir, args.size, args.shapes, args.batch, args.repeats, args.rounds,
                                  args.patch)}
        args.page.write_text(fill(page, blocks(result)))
    except (InputError, OSError) as err:
        print(f"eval_sweep: {err}", file=sys.stderr)
        return 2
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(findings(result["geometries"])))
    print(f"wrote {args.json} and the tables of {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
