"""A fold's stage-2 head: one scikit-learn estimator, `Pipeline([scaler or "passthrough", svr])`.

fit-svr fits it on the fold's training rows and saves it whole; infer and score load it and call
`predict`. cuML's SVR follows scikit-learn's estimator contract, so it sits in the same Pipeline; it is
converted to scikit-learn's before saving (`portable`), so a head loads on a machine without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pawcore.metrics import clip_score

from .backends import make_svr, portable, predict_numpy


@dataclass
class SVRParams:
    backend: str
    kernel: str = "rbf"
    C: float = 20.0
    epsilon: float = 0.1
    gamma: str = "scale"


def make_head(params: SVRParams, scale: bool) -> Pipeline:
    """An unfitted head: a StandardScaler (fitted on the fold's train rows) or none, then the SVR."""
    svr = make_svr(params.backend, kernel=params.kernel, C=params.C, epsilon=params.epsilon, gamma=params.gamma)
    return Pipeline([("scale", StandardScaler() if scale else "passthrough"), ("svr", svr)])


def fit_head(X: np.ndarray, tr: np.ndarray, va: np.ndarray, targets: np.ndarray, params: SVRParams,
             scale: bool) -> tuple[Pipeline, np.ndarray]:
    """(the head fitted on rows `tr`, its predictions for rows `va` on 1..100)."""
    head = make_head(params, scale).fit(X[tr], targets[tr])
    return head, predict(head, X[va])


def predict(head: Pipeline, X: np.ndarray) -> np.ndarray:
    """A head's scores, float64 on 1..100, whatever the backend."""
    return clip_score(predict_numpy(head, X))


def portable_head(head: Pipeline) -> Pipeline:
    """The fitted head with its SVR made loadable without a GPU (cuML -> scikit-learn)."""
    head.steps[-1] = (head.steps[-1][0], portable(head.steps[-1][1]))
    return head
