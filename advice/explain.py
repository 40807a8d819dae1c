"""A heatmap in words, for the page: which part of the photo raises its score most, and which holds it back.

The occlusion map knows regions of the photo, not what is in them (a face, a toy), so the words name
places only: the photo is cut into thirds each way, and each of the nine parts is named ("the centre",
"the top left", "the bottom edge"...). A part's effect is the mean of the map over it: how many points
the score drops, on average, when that part is greyed out. Parts that move the score by less than
`MIN_POINTS` are not worth a sentence, so a flat map says that no part stands out.
"""
from __future__ import annotations

from typing import Any

import numpy as np

MIN_POINTS = 0.5  # Pawpularity points: a region that moves the score less than this is not mentioned
NAMES = (("the top left", "the top edge", "the top right"),
         ("the left side", "the centre", "the right side"),
         ("the bottom left", "the bottom edge", "the bottom right"))


def region_effects(values: np.ndarray) -> list[tuple[str, float]]:
    """(name, mean score drop) of each of the nine parts, in reading order."""
    rows = np.array_split(np.arange(values.shape[0]), 3)
    cols = np.array_split(np.arange(values.shape[1]), 3)
    return [(NAMES[i][j], float(values[np.ix_(r, c)].mean())) for i, r in enumerate(rows) for j, c in enumerate(cols)]


def _points(x: float) -> str:
    n = max(1, round(abs(x)))
    return f"about {n} point{'s' if n != 1 else ''}"


def explain_heat(values: np.ndarray, min_points: float = MIN_POINTS) -> dict[str, Any]:
    """{"helps": {"region", "points"} | None, "hurts": ... | None, "text": one or two plain sentences}.

    helps: the part whose removal lowers the score most (it raises the score), if by >= min_points;
    hurts: the part whose removal raises the score most (it holds the score back), likewise.
    """
    effects = region_effects(values)
    best = max(effects, key=lambda e: e[1])
    worst = min(effects, key=lambda e: e[1])
    helps = {"region": best[0], "points": round(best[1], 1)} if best[1] >= min_points else None
    hurts = {"region": worst[0], "points": round(-worst[1], 1)} if worst[1] <= -min_points else None
    parts = []
    if helps:
        parts.append(f"{helps['region'].capitalize()} of the photo raises its score most ({_points(best[1])}).")
    if hurts:
        parts.append(f"{hurts['region'].capitalize()} holds it back ({_points(worst[1])}).")
    if not parts:
        parts.append(f"No part of the photo changes its score by more than {min_points:g} points on its own.")
    return {"helps": helps, "hurts": hurts, "text": " ".join(parts)}
