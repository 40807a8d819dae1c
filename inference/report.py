"""report.md and its plots, beside the submission: OOF RMSE table, predicted vs true, histograms, blend curve.

Models for this task squeeze their predictions towards the middle of the range; the histograms show
it next to the target distribution.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pawcore.artifacts import atomic_path  # noqa: E402

HEADS = {"NN head": "nn", "SVR head": "svr", "blend": "blend"}
PLOTS = ("oof_scatter.png", "oof_histograms.png", "blend_curve.png")


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_report(out_dir: Path, oof: pd.DataFrame, table: pd.DataFrame, curve: pd.DataFrame, weight: float,
                 chosen_by: str, submission: Path, test_pred: pd.DataFrame, svr_note: str = "") -> Path:
    """Write report.md + PNGs into out_dir; return the report's path."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharex=True, sharey=True)
    for ax, (label, col) in zip(axes, HEADS.items()):
        ax.scatter(oof["target"], oof[col], s=8, alpha=0.5)
        ax.plot([1, 100], [1, 100], "k--", lw=1)
        ax.set(title=label, xlabel="true Pawpularity", xlim=(0, 101), ylim=(0, 101))
    axes[0].set_ylabel("OOF prediction")
    _save(fig, out_dir / PLOTS[0])

    fig, ax = plt.subplots(figsize=(7, 4.2))
    bins = list(range(0, 105, 5))
    ax.hist(oof["target"], bins=bins, alpha=0.35, label="target (train)", color="k")
    for label, col in HEADS.items():
        ax.hist(oof[col], bins=bins, histtype="step", lw=1.8, label=f"OOF {label}")
    ax.hist(test_pred["Pawpularity"], bins=bins, histtype="step", lw=1.8, ls="--", label="test submission")
    ax.set(xlabel="Pawpularity", ylabel="images", title="Predictions vs targets")
    ax.legend()
    _save(fig, out_dir / PLOTS[1])

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(curve["weight"], curve["rmse"])
    best = curve.loc[curve["rmse"].idxmin()]
    ax.axvline(weight, color="r", ls="--", label=f"used: {weight:.2f}")
    ax.scatter([best["weight"]], [best["rmse"]], color="k", zorder=3, label=f"min {best['rmse']:.3f} at {best['weight']:.2f}")
    ax.set(xlabel="blend weight of the NN head (0 = SVR only, 1 = NN only)", ylabel="OOF RMSE", title="Blend")
    ax.legend()
    _save(fig, out_dir / PLOTS[2])

    lines = [
        "# Pawpularity run report", "",
        f"Written {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}. Submission: `{submission}` "
        f"({len(test_pred)} rows).", "",
        f"Blend: final = {weight:.2f} x NN + {1 - weight:.2f} x SVR ({chosen_by}); "
        f"OOF blend-curve minimum {best['rmse']:.3f} at weight {best['weight']:.2f}.", "",
        *([svr_note, ""] if svr_note else []),
        "## Out-of-fold RMSE", "",
        _markdown(table),
        "",
        "Prediction spread (OOF): " + ", ".join(
            f"{label} {oof[col].min():.1f}..{oof[col].max():.1f} (std {oof[col].std():.1f})" for label, col in HEADS.items())
        + f"; targets {oof['target'].min():.0f}..{oof['target'].max():.0f} (std {oof['target'].std():.1f}).", "",
        "## Plots", "",
        f"![OOF predicted vs true]({PLOTS[0]})", "", f"![Histograms]({PLOTS[1]})", "", f"![Blend curve]({PLOTS[2]})", "",
    ]
    path = out_dir / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path


def _markdown(table: pd.DataFrame) -> str:
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    return "\n".join([header, rule] + ["| " + " | ".join(row) + " |" for row in cells])
