"""The gradient-boosted head: XGBoost trees as a scikit-learn estimator, beside the SVR in the same kind of head.

`fit-svr --heads svr,gbdt` fits, per fold, `Pipeline([scale, balance, gbdt])` (both preparation steps
"passthrough": trees do not care about a feature's scale) on the fold's training rows and saves it as the
SVR's head is saved; infer and score load it and call `predict`.

Early stopping never sees the fold's validation rows: `GBDTRegressor.fit` splits the rows it is given (the
fold's training rows) into an inner training part and an inner stopping part (`validation_fraction`,
stratified on the binned target, seeded), grows trees on the first until the RMSE of the second has not
improved for `early_stopping_rounds`, then refits on all the rows it was given with the number of trees
found (`n_trees_`): the inner split only chooses how many trees, and no training row is left unused.

Backends: `xgboost-cpu` on CPU machines, the full `xgboost` (its CUDA build) with device="cuda" on a GPU.
The fitted booster is switched to device="cpu" before it is saved, so a head fitted on a GPU loads and
predicts on a machine without one.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from pawcore.errors import ConfigError

from .head import Prep, make_prep

log = logging.getLogger(__name__)


def _xgboost():
    if importlib.util.find_spec("xgboost") is None:
        raise ConfigError("--heads gbdt needs XGBoost: pip install xgboost-cpu (CPU machines; it comes with "
                          "pip install -e '.[dev,cpu-fast]') or, on a GPU machine, pip install xgboost "
                          "(pip install -e '.[dev,gpu]'); or use --heads svr.")
    import xgboost

    return xgboost


def xgboost_device(device: str) -> str:
    """'cuda' (or 'cuda:N') when the torch device resolves to a GPU and this XGBoost was built with CUDA, else 'cpu'."""
    import torch

    wanted = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if not wanted.startswith("cuda"):
        return "cpu"
    if not _xgboost().build_info().get("USE_CUDA", False):
        log.warning("XGBoost here is a CPU build (xgboost-cpu): the GBDT head trains on the CPU. On a GPU machine "
                    "install the full xgboost instead (pip install -e '.[dev,gpu]').")
        return "cpu"
    return wanted


@dataclass(frozen=True)
class GBDTParams:
    """The GBDT head's settings: conservative trees for a few hundred to ten thousand rows of wide features.
    Not chosen on OOF, so the head's OOF RMSE stays an honest estimate."""

    n_estimators: int = 2000          # the most trees; early stopping picks how many
    learning_rate: float = 0.05
    max_depth: int = 3
    min_child_weight: float = 3.0
    subsample: float = 0.8
    colsample_bytree: float = 0.3     # wide embeddings: each tree sees a third of the columns
    reg_lambda: float = 1.0
    # 32 histogram bins per feature: a tree's cost grows with columns x bins, and thousands of embedding
    # columns at XGBoost's 256 bins took 8x longer (measured: 100 trees on 256 x 5120, 1.6 s vs 9.5 s on
    # one core) on data whose few hundred rows cannot tell finer thresholds apart.
    max_bin: int = 32
    early_stopping_rounds: int = 50
    validation_fraction: float = 0.2
    random_state: int = 0


class GBDTRegressor(RegressorMixin, BaseEstimator):
    """XGBoost regression trees whose number is chosen by early stopping on an inner split of the fit rows
    (see the module's docstring). Learned: `model_` (an XGBRegressor), `n_trees_`, `best_iteration_`,
    `inner_rmse_` (the stopping part's RMSE at the chosen number of trees)."""

    def __init__(self, n_estimators: int = 2000, learning_rate: float = 0.05, max_depth: int = 3,
                 min_child_weight: float = 3.0, subsample: float = 0.8, colsample_bytree: float = 0.3,
                 reg_lambda: float = 1.0, max_bin: int = 32, early_stopping_rounds: int = 50,
                 validation_fraction: float = 0.2, random_state: int = 0, device: str = "cpu",
                 n_jobs: int | None = None):
        self.n_estimators, self.learning_rate, self.max_depth = n_estimators, learning_rate, max_depth
        self.min_child_weight, self.subsample, self.colsample_bytree = min_child_weight, subsample, colsample_bytree
        self.reg_lambda, self.max_bin, self.early_stopping_rounds = reg_lambda, max_bin, early_stopping_rounds
        self.validation_fraction, self.random_state, self.device, self.n_jobs = validation_fraction, random_state, device, n_jobs

    def _booster(self, **changes):
        params = dict(n_estimators=self.n_estimators, learning_rate=self.learning_rate, max_depth=self.max_depth,
                      min_child_weight=self.min_child_weight, subsample=self.subsample,
                      colsample_bytree=self.colsample_bytree, reg_lambda=self.reg_lambda, max_bin=self.max_bin,
                      tree_method="hist",
                      objective="reg:squarederror", eval_metric="rmse", random_state=self.random_state,
                      device=self.device, n_jobs=self.n_jobs)
        return _xgboost().XGBRegressor(**{**params, **changes})

    def fit(self, X, y):
        X, y = np.asarray(X, np.float32), np.asarray(y, np.float64)
        fit_rows, stop_rows = inner_split(y, self.validation_fraction, self.random_state)
        stopper = self._booster(early_stopping_rounds=self.early_stopping_rounds)
        stopper.fit(X[fit_rows], y[fit_rows], eval_set=[(X[stop_rows], y[stop_rows])], verbose=False)
        self.best_iteration_ = int(stopper.best_iteration)
        self.inner_rmse_ = float(stopper.best_score)
        self.n_trees_ = self.best_iteration_ + 1
        self.model_ = self._booster(n_estimators=self.n_trees_).fit(X, y, verbose=False)
        self.model_.set_params(device="cpu")  # predicts anywhere, also where the head was fitted on a GPU
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return np.asarray(self.model_.predict(np.asarray(X, np.float32)), np.float64)


def inner_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows to grow trees on, rows to stop on): a seeded split, stratified on 5 quantile bins of y so
    both parts span the score range."""
    rows = np.arange(len(y))
    n_stop = max(1, int(round(fraction * len(y))))
    bins = np.digitize(y, np.quantile(y, [0.2, 0.4, 0.6, 0.8]))
    try:
        return tuple(np.sort(part) for part in train_test_split(rows, test_size=n_stop, random_state=seed,
                                                                stratify=bins))
    except ValueError:  # too few rows in some bin to stratify: a plain seeded split
        return tuple(np.sort(part) for part in train_test_split(rows, test_size=n_stop, random_state=seed))


def make_gbdt_head(params: GBDTParams, widths, device: str = "cpu") -> Pipeline:
    """An unfitted GBDT head, the same kind of Pipeline as the SVR's (its preparation steps passthrough)."""
    return Pipeline([*make_prep(Prep(), widths), ("gbdt", GBDTRegressor(**asdict(params), device=device))])
