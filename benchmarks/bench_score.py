#!/usr/bin/env python
"""Latency of `score` for one photo on CPU: plain, with crop search, with heatmap, vs a bare forward pass.

    .venv/bin/python benchmarks/bench_score.py --artifacts-dir A --run R --photos DIR [--n 20]

Needs a finished run with a submission (ensemble.json). Each photo of a fixed set (the first --n of DIR,
sorted) is scored alone, as a request to `serve` would be, through `advice.advise` from the photo's bytes
(decode, every fold's network and SVR, blend). The baseline, in the same process, is the bare forward
pass of the same fold networks on that photo's pixels already decoded to a tensor (the same TTA views):
the least any scoring could cost. Prints RESULTS.md rows (p50 / p95 over the photos).
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts-dir", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--photos", required=True, help="Folder of photos; the first --n (sorted) are used.")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--row", type=int, default=7, help="Number of the first RESULTS.md row.")
    args = p.parse_args()

    ensemble = load_ensemble(args.artifacts_dir, args.run, device="cpu")
    paths = sorted(Path(args.photos).glob("*.jpg"))[:args.n]
    photos = [open_photo(str(path), path.read_bytes()) for path in paths]
    sizes = sorted({pr.img_size for pr in ensemble.predictors.values()})
    n_folds = sum(len(pr.models) for pr in ensemble.predictors.values())

    modes = {"bare": [], "plain": [], "crop": [], "heatmap": []}
    crop_candidates = []
    advise(ensemble, photos[:1], crop=True, heatmap=True)  # warm-up: first calls allocate
    for photo in photos:  # interleaved per photo, so machine noise hits every mode alike
        pixels = {s: torch.from_numpy(photo.rgb(s)).permute(2, 0, 1)[None].contiguous() for s in sizes}
        modes["bare"].append(timed(lambda: bare_forward(ensemble, pixels)))
        modes["plain"].append(timed(lambda: advise(ensemble, [open_photo(photo.name, photo.data)])))
        out = []
        modes["crop"].append(timed(lambda: out.extend(advise(ensemble, [open_photo(photo.name, photo.data)], crop=True))))
        crop_candidates.append(out[0].crop.n_candidates)
        modes["heatmap"].append(timed(lambda: advise(ensemble, [open_photo(photo.name, photo.data)], heatmap=True)))

    def pct(mode: str) -> tuple[float, float]:
        return float(np.percentile(modes[mode], 50)), float(np.percentile(modes[mode], 95))

    bare50, bare95 = pct("bare")
    settings = (f"run {args.run!r}: {n_folds} fold(s) x {len(ensemble.predictors)} run(s), {', '.join(map(str, sizes))} px, "
                f"test-time views: {','.join(ensemble.spec.tta) or 'none'}; {len(photos)} photos of {args.photos}")
    print(f"Command: `python benchmarks/bench_score.py --artifacts-dir {args.artifacts_dir} --run {args.run} "
          f"--photos {args.photos} --n {args.n}` on {dt.date.today().isoformat()}; {platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), CPU; "
          f"load average at the end {os.getloadavg()[0]:.1f} (other jobs share these cores).")
    print(f"Setting: {settings}. Crop search: {int(np.median(crop_candidates))} candidates per photo (median).\n")
    print("| # | benchmark | measured (p50 / p95) | baseline (same run) | ratio (p50) | goal |")
    print("|---|---|---|---|---|---|")
    labels = {"plain": "score one photo (decode, all folds' NN + SVR, blend)",
              "crop": "score + crop search (all candidates batched)",
              "heatmap": "score + occlusion heatmap (Captum, 7 x 7 windows)"}
    for i, mode in enumerate(("plain", "crop", "heatmap")):
        p50, p95 = pct(mode)
        print(f"| {args.row + i} | {labels[mode]} | {p50 * 1000:.0f} / {p95 * 1000:.0f} ms | bare forward pass of the "
              f"same networks {bare50 * 1000:.0f} / {bare95 * 1000:.0f} ms | {p50 / bare50:.1f}x | interactive (< 2 s plain) |")


if __name__ == "__main__":
    main()
