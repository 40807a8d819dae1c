"""The heatmap in words (advice/explain.py): the part named is the part of the map that moves the score."""
from __future__ import annotations

import numpy as np
import pytest

from advice.explain import explain_heat, region_effects


def _map(**parts: float) -> np.ndarray:
    """A 64 x 64 map, 0 except the named thirds (row, column) set to a score drop."""
    values = np.zeros((64, 64), np.float32)
    cells = {"top_left": (0, 0), "centre": (1, 1), "bottom_right": (2, 2), "right": (1, 2)}
    for name, drop in parts.items():
        i, j = cells[name]
        rows, cols = np.array_split(np.arange(64), 3)[i], np.array_split(np.arange(64), 3)[j]
        values[np.ix_(rows, cols)] = drop
    return values


def test_the_strongest_regions_are_named_by_place_and_direction():
    """Catches the sign turned round (a region that lowers the score named as raising it) and rows and
    columns swapped (the right side named as the bottom)."""
    why = explain_heat(_map(centre=4.2, right=1.0, top_left=-2.6))
    assert why["helps"] == {"region": "the centre", "points": 4.2}
    assert why["hurts"] == {"region": "the top left", "points": 2.6}
    assert why["text"] == ("The centre of the photo raises its score most (about 4 points). "
                           "The top left holds it back (about 3 points).")
    assert explain_heat(_map(right=3.0))["helps"]["region"] == "the right side"
    assert dict(region_effects(_map(bottom_right=-1.0)))["the bottom right"] == pytest.approx(-1.0)


def test_a_flat_map_claims_no_reason():
    """Catches noise presented as a reason: parts that move the score by less than half a point."""
    why = explain_heat(_map(centre=0.3, top_left=-0.2))
    assert why["helps"] is None and why["hurts"] is None
    assert why["text"] == "No part of the photo changes its score by more than 0.5 points on its own."
    assert explain_heat(_map(centre=0.6))["text"] == "The centre of the photo raises its score most (about 1 point)."
