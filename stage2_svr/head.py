"""A fold's stage-2 head: one scikit-learn estimator, `Pipeline([scaler, balance, svr])`.

    scale    StandardScaler fitted on the fold's train rows, or "passthrough"
    balance  BlockBalance: each source's block divided by its train rows' total std, or "passthrough"
    svr      the SVR, its kernel width resolved to a number on the fold's train rows

fit-svr fits it on the fold's training rows and saves it whole; infer and score load it and call
`predict`, so the scaler, the balance and the kernel width travel inside the file. cuML's SVR follows
scikit-learn's estimator contract, so it sits in the same Pipeline; it is converted to scikit-learn's
before saving (`portable`), so a head loads on a machine without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pawcore.metrics import clip_score

from .backends import make_svr, parse_gamma, portable, predict_numpy


@dataclass(frozen=True)
class SVRParams:
    """The SVR's settings. The kernel coefficient is `gamma_factor` x `gamma`, where `gamma` is 'scale'
    (1 / (n_features x variance of the SVR's input on the train rows), as scikit-learn), 'auto'
    (1 / n_features) or a number: a factor relative to 'scale' means the same kernel width whatever the
    number of features."""

    backend: str
    kernel: str = "rbf"
    C: float = 20.0
    epsilon: float = 0.1
    gamma: str = "scale"
    gamma_factor: float = 1.0


@dataclass(frozen=True)
class Prep:
    """How a head's input is prepared before the SVR: standardised columns, balanced source blocks."""

    standardize: bool = False
    balance: bool = False

    def effective(self, widths: Sequence[int]) -> "Prep":
        """The same transform with a no-op balance switched off: one block, or equal-width standardised
        blocks, are only multiplied by one constant, which a gamma relative to 'scale' cancels."""
        noop = len(widths) <= 1 or (self.standardize and len(set(widths)) == 1)
        return Prep(self.standardize, self.balance and not noop)


class BlockBalance(TransformerMixin, BaseEstimator):
    """Divide each block of columns (one per feature source) by its total std on the fit rows, so that
    every block has unit total variance and weighs the same in the RBF kernel's distance, whatever its
    width or scale. `widths`: the blocks' numbers of columns, left to right."""

    def __init__(self, widths: Sequence[int] = ()):
        self.widths = widths

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        if sum(self.widths) != X.shape[1]:
            raise ValueError(f"blocks of widths {list(self.widths)} do not add up to {X.shape[1]} columns")
        edges = np.cumsum([0, *self.widths])
        totals = [np.sqrt(X[:, a:b].var(axis=0).sum()) for a, b in zip(edges[:-1], edges[1:])]
        self.block_scale_ = np.array([t if t > 0 else 1.0 for t in totals])  # a constant block: left as is
        self.scale_ = np.repeat(self.block_scale_, self.widths)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X)
        return X / self.scale_.astype(X.dtype if X.dtype.kind == "f" else np.float64)  # float32 stays float32


def factor_words(g: float) -> str:
    """A gamma factor as people read it: 1/16 rather than 0.0625 (the grid's factors are powers of two)."""
    return f"1/{1 / g:g}" if 0 < g < 1 and float(1 / g).is_integer() else f"{g:g}"


def make_prep(prep: Prep, widths: Sequence[int]) -> list[tuple[str, object]]:
    """The head's steps before the SVR, unfitted."""
    return [("scale", StandardScaler() if prep.standardize else "passthrough"),
            ("balance", BlockBalance(tuple(int(w) for w in widths)) if prep.balance else "passthrough")]


def base_gamma(gamma: str | float, Xt: np.ndarray) -> float:
    """The kernel coefficient 'scale' / 'auto' / a number stands for on the SVR's (prepared) train rows,
    computed as scikit-learn computes it (in float64)."""
    gamma = parse_gamma(gamma)
    if gamma == "scale":
        var = np.asarray(Xt, dtype=np.float64).var()
        return 1.0 / (Xt.shape[1] * var) if var > 0 else 1.0
    if gamma == "auto":
        return 1.0 / Xt.shape[1]
    return float(gamma)


def make_head(params: SVRParams, prep: Prep, widths: Sequence[int], gamma: float | str = "scale") -> Pipeline:
    """An unfitted head; `gamma` is the SVR's kernel coefficient (fit_head resolves it on the train rows)."""
    svr = make_svr(params.backend, kernel=params.kernel, C=params.C, epsilon=params.epsilon, gamma=gamma)
    return Pipeline([*make_prep(prep, widths), ("svr", svr)])


def fit_head(X: np.ndarray, tr: np.ndarray, va: np.ndarray, targets: np.ndarray, params: SVRParams,
             prep: Prep = Prep(), widths: Sequence[int] | None = None) -> tuple[Pipeline, np.ndarray]:
    """(the head fitted on rows `tr`, its predictions for rows `va` on 1..100). The kernel coefficient is
    `params.gamma_factor` x `params.gamma` on the prepared train rows, saved as a number in the head."""
    widths = [X.shape[1]] if widths is None else widths
    steps = Pipeline(make_prep(prep, widths)) if prep != Prep() else None
    Xt = steps.fit_transform(X[tr]) if steps is not None else X[tr]
    gamma = params.gamma_factor * base_gamma(params.gamma, Xt)
    head = make_head(params, prep, widths, gamma).fit(X[tr], targets[tr])
    return head, predict(head, X[va])


def predict(head: Pipeline, X: np.ndarray) -> np.ndarray:
    """A head's scores, float64 on 1..100, whatever the backend."""
    return clip_score(predict_numpy(head, X))


def portable_head(head: Pipeline) -> Pipeline:
    """The fitted head with its SVR made loadable without a GPU (cuML -> scikit-learn)."""
    head.steps[-1] = (head.steps[-1][0], portable(head.steps[-1][1]))
    return head
