"""report.md and its plots, beside the submission: heads and weights, OOF RMSE per fold, predicted vs
true, histograms, the NN/SVR blend curve and the weights of every head.

Models for this task squeeze their predictions towards the middle of the range; the histograms show
it next to the target distribution.
"""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pawcore.artifacts import atomic_path  # noqa: E402
from stage1_backbone.manifest import Stage1Manifest  # noqa: E402

PLOTS = ("oof_scatter.png", "oof_histograms.png", "blend_curve.png", "weights.png")


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _plot_columns(head_table: pd.DataFrame) -> dict[str, str]:
    """{label: OOF column} of every head and of the final score ('blend' column), for the scatter/histograms."""
    heads = list(head_table["head"])
    return {**{h: h for h in heads[:-1]}, f"final ({heads[-1]})": "blend"}


def _scatter(oof: pd.DataFrame, columns: dict[str, str], path: Path) -> None:
    ncols = min(len(columns), 3)
    nrows = math.ceil(len(columns) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 4.2 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (label, col) in zip(axes.flat, columns.items()):
        ax.scatter(oof["target"], oof[col], s=8, alpha=0.5)
        ax.plot([1, 100], [1, 100], "k--", lw=1)
        ax.set(title=label, xlabel="true Pawpularity", xlim=(0, 101), ylim=(0, 101))
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("OOF prediction")
    _save(fig, path)


def _histograms(oof: pd.DataFrame, columns: dict[str, str], test_pred: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    bins = list(range(0, 105, 5))
    ax.hist(oof["target"], bins=bins, alpha=0.35, label="target (train)", color="k")
    for label, col in columns.items():
        ax.hist(oof[col], bins=bins, histtype="step", lw=1.8, label=f"OOF {label}")
    ax.hist(test_pred["Pawpularity"], bins=bins, histtype="step", lw=1.8, ls="--", label="test submission")
    ax.set(xlabel="Pawpularity", ylabel="images", title="Predictions vs targets")
    ax.legend(fontsize="small")
    _save(fig, path)


def _blend_curve(curve: pd.DataFrame, share: float | None, several: bool, path: Path) -> pd.Series:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(curve["weight"], curve["rmse"])
    best = curve.loc[curve["rmse"].idxmin()]
    if share is not None:
        ax.axvline(share, color="r", ls="--", label=f"used: {share:.2f}")
    ax.scatter([best["weight"]], [best["rmse"]], color="k", zorder=3, label=f"min {best['rmse']:.3f} at {best['weight']:.2f}")
    what = "the mean NN head (0 = mean SVR only)" if several else "the NN head (0 = SVR only, 1 = NN only)"
    ax.set(xlabel=f"blend weight of {what}", ylabel="OOF RMSE", title="Blend")
    ax.legend()
    _save(fig, path)
    return best


def _weights(head_table: pd.DataFrame, path: Path) -> None:
    heads = head_table.iloc[:-1]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(heads) + 2), 4.2))
    colors = ["tab:blue" if h.endswith(":nn") else "tab:orange" for h in heads["head"]]
    bars = ax.bar(heads["head"], heads["weight"], color=colors)
    for bar, w, r in zip(bars, heads["weight"], heads["OOF RMSE"]):
        ax.annotate(f"{w:.2f}" + ("" if math.isnan(r) else f"\nRMSE {r:.2f}"), (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize="small")
    ax.set(ylabel="weight in the final score", ylim=(0, 1.15), title="Head weights (blue: NN, orange: SVR)")
    ax.tick_params(axis="x", labelrotation=20)
    _save(fig, path)


def stage1_notes(stage1: Stage1Manifest, partial: dict | None) -> list[str]:
    """What the OOF numbers mean for this run: which stage-1 weights, and whether folds are missing."""
    if stage1.checkpoint == "last":
        notes = ["Stage-1 weights: the last epoch of each fold, no early stopping (`--checkpoint last`). Nothing "
                 "was chosen on the validation folds, so the NN and SVR OOF RMSEs are honest estimates (a blend "
                 "weight chosen by `--blend auto` is chosen on OOF, so its blend row is slightly optimistic)."]
    else:
        notes = ["Stage-1 weights: the best epoch of each fold by its validation RMSE, with early stopping "
                 "(`--checkpoint best`, the competition's common practice). That epoch was chosen on the fold "
                 "it then scores, so the NN OOF RMSE, the SVR OOF RMSE (built on those weights) and the blend "
                 "are optimistic; a held-out test set gives the honest figure (`--checkpoint last` gives "
                 "honest OOF)."]
    if partial:
        notes.append(f"PARTIAL stage 1 (`--allow-partial`): folds {partial['folds']} of {partial['n_folds']}, "
                     f"fold(s) {partial['missing']} missing. The OOF rows cover only those folds' photos and the "
                     f"submission averages {len(partial['folds'])} fold model(s).")
    return notes


def write_report(out_dir: Path, oof: pd.DataFrame | None, table: pd.DataFrame | None, head_table: pd.DataFrame,
                 curve: pd.DataFrame | None, share: float | None, chosen_by: str, submission: Path,
                 test_pred: pd.DataFrame, notes: Sequence[str] = (), cross_fitted: float | None = None) -> Path:
    """Write report.md + PNGs into out_dir; return the report's path.

    `head_table`: one row per head (head, OOF RMSE, OOF std, weight), then the final score's row. `share`:
    the NN weight W when the weights are `--blend W`-shaped, else None. `oof`, `table`, `curve` are None
    when the OOF files are absent (--weights-from on a machine without them). `cross_fitted`: the blend's
    RMSE with weights fitted without each fold (--blend auto), shown beside the fitted one.
    """
    runs = list(dict.fromkeys(h.rsplit(":", 1)[0] for h in head_table["head"].iloc[:-1]))
    several = len(runs) > 1
    if share is None:
        formula = "final = " + " + ".join(f"{w:.3f} x {h}" for h, w in zip(head_table["head"].iloc[:-1],
                                                                           head_table["weight"].iloc[:-1]) if w > 0)
    elif several:
        formula = f"final = {share:.2f} x mean NN + {1 - share:.2f} x mean SVR (over {len(runs)} runs)"
    else:
        formula = f"final = {share:.2f} x NN + {1 - share:.2f} x SVR"
    fitted = "on OOF" in chosen_by
    lines = [
        "# Pawpularity run report", "",
        f"Written {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}. Submission: `{submission}` "
        f"({len(test_pred)} rows). Runs: {', '.join(runs)}.", "",
        f"Blend: {formula} ({chosen_by}), clipped to [1, 100].", "",
        "## Heads", "",
        _markdown(head_table), "",
    ]
    if oof is not None:
        lines += [f"OOF std: each head's prediction spread beside the target's ({oof['target'].std():.1f}); a head "
                  f"far below it is compressed toward the mean.", ""]
    if fitted:
        lines += _fitted_blend_lines(head_table["OOF RMSE"].iat[-1], cross_fitted)
    lines += [*[f"- {note}" for note in notes], ""]
    plots = [PLOTS[3]]
    _weights(head_table, out_dir / PLOTS[3])
    if oof is not None:
        columns = _plot_columns(head_table)
        _scatter(oof, columns, out_dir / PLOTS[0])
        _histograms(oof, columns, test_pred, out_dir / PLOTS[1])
        best = _blend_curve(curve, share, several, out_dir / PLOTS[2])
        plots = list(PLOTS)
        lines += [
            f"OOF blend-curve minimum{' (mean NN vs mean SVR)' if several else ''}: {best['rmse']:.3f} at "
            f"weight {best['weight']:.2f}.", "",
            "## Out-of-fold RMSE per fold", "",
            _markdown(table), "",
            "Prediction spread (OOF): " + ", ".join(
                f"{label} {oof[col].min():.1f}..{oof[col].max():.1f} (std {oof[col].std():.1f})"
                for label, col in columns.items())
            + f"; targets {oof['target'].min():.0f}..{oof['target'].max():.0f} (std {oof['target'].std():.1f}).", "",
        ]
    else:
        lines += ["No out-of-fold predictions were available, so no OOF scores or plots of them.", ""]
    lines += ["## Plots", ""] + [f"![{name[:-4]}]({name})\n" for name in plots]
    path = out_dir / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path


def _fitted_blend_lines(fitted: float, cross_fitted: float | None) -> list[str]:
    """Both blend numbers, and which one to trust."""
    if cross_fitted is None:
        return [f"The final score's OOF RMSE ({fitted:.3f}) is optimistic: its weights were fitted on these same "
                "rows (no cross-fitted figure: a single fold).", ""]
    return ["| blend OOF RMSE | value | |", "|---|---|---|",
            f"| fitted (weights chosen on all OOF rows) | {fitted:.3f} | optimistic |",
            f"| cross-fitted (each fold scored with weights fitted on the other folds) | {cross_fitted:.3f} | "
            "**trust this one** |", "",
            "Both use the heads' OOF predictions: where a head's settings were chosen on OOF (see the SVR note "
            "below), its nested estimate says how much of that to discount.", ""]


def _markdown(table: pd.DataFrame) -> str:
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    return "\n".join([header, rule] + ["| " + " | ".join(row) + " |" for row in cells])
