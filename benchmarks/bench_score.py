#!/usr/bin/env python
"""Latency of `score` for one photo on CPU: plain, with crop search, with heatmap, vs a bare forward pass.

    .venv/bin/python benchmarks/bench_score.py --artifacts-dir A --run R --photos DIR [--n 20]
        [--variants "scales=3,positions=3;scales=2,positions=3" --windows "4;7"]

Needs a finished run with a submission (ensemble.json). Each photo of a fixed set (the first --n of DIR,
sorted) is scored alone, as a request to `serve` would be, through `advice.advise` from the photo's bytes
(decode, every fold's network and SVR, blend). The baseline, in the same process, is the bare forward
pass of the same fold networks on that photo's pixels already decoded to a tensor (the same TTA views):
the least any scoring could cost. Prints RESULTS.md rows (p50 / p95 over the photos) and, for the crop
search, how often a crop is suggested and its held-out gain beside the optimistic one (the favourite's
own score minus the photo's). --variants / --windows time other candidate grids and heatmap grids
(n x n windows) the same way, to choose the defaults by measurement.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advice.advise import advise  # noqa: E402
from advice.crop import suggest_crop  # noqa: E402
from advice.heatmap import STRIDE, WINDOW, occlusion_map, windows  # noqa: E402
from advice.photos import open_photo  # noqa: E402
from inference.ensemble import load_ensemble  # noqa: E402
from pawcore.views import tta_views  # noqa: E402
from stage1_backbone.predict import view_batch  # noqa: E402


def bare_forward(ensemble, pixels: dict[int, torch.Tensor]) -> None:
    with torch.inference_mode():
        for predictor in ensemble.predictors.values():
            x = pixels[predictor.img_size]
            for model in predictor.models.values():
                for view in tta_views(ensemble.spec.tta):
                    model.head_logits(model.embed(view_batch(x, view)))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _settings(text: str) -> list[dict[str, int]]:
    return [{k: int(v) for k, v in (kv.split("=") for kv in part.split(","))} for part in text.split(";") if part]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts-dir", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--photos", required=True, help="Folder of photos; the first --n (sorted) are used.")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--row", type=int, default=7, help="Number of the first RESULTS.md row.")
    p.add_argument("--variants", default="", help="Crop grids to time besides the default, e.g. "
                   "'scales=4,positions=3;scales=2,positions=3'.")
    p.add_argument("--windows", default="", help="Heatmap grids to time besides the default, e.g. '7;3' "
                   "(n x n windows of side 1/n... with stride 1/n; 7 means the old 1/4 window, 1/8 stride).")
    args = p.parse_args()

    ensemble = load_ensemble(args.artifacts_dir, args.run, device="cpu")
    paths = sorted(Path(args.photos).glob("*.jpg"))[:args.n]
    photos = [open_photo(str(path), path.read_bytes()) for path in paths]
    sizes = sorted({pr.img_size for pr in ensemble.predictors.values()})
    n_folds = sum(len(pr.models) for pr in ensemble.predictors.values())

    variants = [{}] + _settings(args.variants)
    grids = [None] + [int(w) for w in args.windows.split(";") if w]
    modes: dict[str, list[float]] = {"bare": [], "plain": [], "crop": [], "heatmap": []}
    modes.update({f"crop {v}": [] for v in variants[1:]})
    modes.update({f"heatmap {w}": [] for w in grids[1:]})
    crops: dict[str, list] = {str(v): [] for v in variants}
    advise(ensemble, photos[:1], crop=True, heatmap=True)  # warm-up: first calls allocate
    for photo in photos:  # interleaved per photo, so machine noise hits every mode alike
        pixels = {s: torch.from_numpy(photo.rgb(s)).permute(2, 0, 1)[None].contiguous() for s in sizes}
        modes["bare"].append(timed(lambda: bare_forward(ensemble, pixels)))
        modes["plain"].append(timed(lambda: advise(ensemble, [open_photo(photo.name, photo.data)])))
        out: list = []
        modes["crop"].append(timed(lambda: out.extend(advise(ensemble, [open_photo(photo.name, photo.data)], crop=True))))
        crops["{}"].append(out[0].crop)
        modes["heatmap"].append(timed(lambda: advise(ensemble, [open_photo(photo.name, photo.data)], heatmap=True)))
        for v in variants[1:]:
            def search(v=v):
                fresh = open_photo(photo.name, photo.data)
                advise(ensemble, [fresh])
                crops[str(v)].append(suggest_crop(ensemble, fresh, n_scales=v["scales"], n_positions=v["positions"]))
            modes[f"crop {v}"].append(timed(search))
        for w in grids[1:]:
            def heat(w=w):
                fresh = open_photo(photo.name, photo.data)
                advise(ensemble, [fresh])
                side = 1 / 4 if w == 7 else 1 / w
                occlusion_map(ensemble, fresh, window=side, stride=side / 2 if w == 7 else side)
            modes[f"heatmap {w}"].append(timed(heat))

    def pct(mode: str) -> tuple[float, float]:
        return float(np.percentile(modes[mode], 50)), float(np.percentile(modes[mode], 95))

    bare50, bare95 = pct("bare")
    plain50, _ = pct("plain")
    settings = (f"run {args.run!r}: {n_folds} fold(s) x {len(ensemble.predictors)} run(s), {', '.join(map(str, sizes))} px, "
                f"test-time views: {','.join(ensemble.spec.tta) or 'none'}; {len(photos)} photos of {args.photos}")
    print(f"Command: `python benchmarks/bench_score.py --artifacts-dir {args.artifacts_dir} --run {args.run} "
          f"--photos {args.photos} --n {args.n}"
          + (f" --variants '{args.variants}'" if args.variants else "") + (f" --windows '{args.windows}'" if args.windows else "")
          + f"` on {dt.date.today().isoformat()}; {platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), CPU; "
          f"load average at the end {os.getloadavg()[0]:.1f} (other jobs share these cores).")
    print(f"Setting: {settings}.\n")
    print("| # | benchmark | measured (p50 / p95) | baseline (same run) | ratio to a plain score (p50) | goal |")
    print("|---|---|---|---|---|---|")
    rows = [("plain", "score one photo (decode, all folds' NN + SVR, blend)", "interactive (< 2 s)"),
            ("crop", f"score + crop search ({int(np.median([c.n_candidates for c in crops['{}']]))} candidates "
                     f"incl. the photo, one batch)", "p50 <= 2.5 s"),
            ("heatmap", f"score + occlusion heatmap ({len(windows(WINDOW, STRIDE))} windows, one batch)", "p50 <= 2.5 s")]
    for i, (mode, label, goal) in enumerate(rows):
        p50, p95 = pct(mode)
        met = "" if mode == "plain" else (": met" if p50 <= 2.5 else ": not met")
        print(f"| {args.row + i} | {label} | {p50 * 1000:.0f} / {p95 * 1000:.0f} ms | plain score {plain50 * 1000:.0f} ms; "
              f"bare forward pass {bare50 * 1000:.0f} / {bare95 * 1000:.0f} ms | {p50 / plain50:.1f}x | {goal}{met} |")
    print("\n| crop grid | candidates (median) | p50 / p95 | suggested | held-out gain (mean) | favourite's own gain (mean) |")
    print("|---|---|---|---|---|---|")
    for v in variants:
        mode = "crop" if not v else f"crop {v}"
        cs = crops[str(v)]
        p50, p95 = pct(mode)
        held = [c.gain for c in cs if c.gain is not None]
        print(f"| {v or 'default'} | {int(np.median([c.n_candidates for c in cs]))} | {p50 * 1000:.0f} / {p95 * 1000:.0f} ms | "
              f"{sum(c.suggested for c in cs)} of {len(cs)} | {np.mean(held):+.2f} | "
              f"{np.mean([c.best_score - c.photo_score for c in cs]):+.2f} |")
    for w in grids[1:]:
        p50, p95 = pct(f"heatmap {w}")
        print(f"\nHeatmap with {w} x {w} windows{' (window 1/4, stride 1/8: the old default)' if w == 7 else ''}: "
              f"{p50 * 1000:.0f} / {p95 * 1000:.0f} ms ({p50 / plain50:.1f}x a plain score).")


if __name__ == "__main__":
    main()
