#!/usr/bin/env python
"""SVR backends side by side on one fold-sized problem: seconds per fit, speed ratio, agreement.

    python benchmarks/bench_svr.py                 # 8,921 x 1,280 float32 (a competition fold), C=20
    python benchmarks/bench_svr.py --rows 3000     # quicker

Every available backend (sklearn, sklearnex, cuml) fits the same data in the same run, so the ratio
is measured side by side. Agreement: max |prediction difference| and RMSE difference against sklearn;
backends must agree within TOLERANCE Pawpularity points of RMSE.
"""
from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stage2_svr.backends import cuml_usable, make_svr, predict_numpy, sklearnex_usable  # noqa: E402

TOLERANCE = 0.05  # RMSE points
logging.getLogger("sklearnex").setLevel(logging.WARNING)  # one INFO line per call otherwise


def problem(rows: int, dim: int, seed: int = 0):
    """Embedding-like data: correlated features (low-rank + noise), target a smooth function of them."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(rows + 1000, 32))
    X = (latent @ rng.normal(size=(32, dim)) / np.sqrt(32) + 0.5 * rng.normal(size=(rows + 1000, dim)))
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    y = np.clip(38 + 12 * latent[:, 0] + 6 * np.tanh(latent[:, 1] * latent[:, 2]) + rng.normal(0, 15, len(X)), 1, 100)
    return X[:rows], y[:rows], X[rows:], y[rows:]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=8921)
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--C", type=float, default=20.0)
    args = p.parse_args()
    Xtr, ytr, Xte, yte = problem(args.rows, args.dim)
    backends = ["sklearn"] + (["sklearnex"] if sklearnex_usable() else []) + (["cuml"] if cuml_usable() else [])
    print(f"# SVR(C={args.C:g}, rbf, gamma=scale) on {args.rows} x {args.dim} float32; "
          f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores")
    results = {}
    for backend in backends:
        X_fit = Xtr
        if backend == "cuml":
            import cupy
            X_fit = cupy.asarray(Xtr)
        model = make_svr(backend, C=args.C)
        t0 = time.perf_counter()
        model.fit(X_fit, ytr)
        seconds = time.perf_counter() - t0
        pred = predict_numpy(model, Xte)
        results[backend] = (seconds, pred, float(np.sqrt(np.mean((pred - yte) ** 2))))
    base_s, base_pred, base_rmse = results["sklearn"]
    print("| backend | fit seconds | speed-up vs sklearn | held-out RMSE | RMSE diff | max pred diff |")
    print("|---|---|---|---|---|---|")
    ok = True
    for backend, (s, pred, r) in results.items():
        diff = abs(r - base_rmse)
        ok &= diff <= TOLERANCE
        print(f"| {backend} | {s:.2f} | {base_s / s:.1f}x | {r:.3f} | {diff:.4f} | {np.abs(pred - base_pred).max():.4f} |")
    print(f"agreement within {TOLERANCE} RMSE points: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
