"""One factory, interchangeable SVR regressors: cuML (GPU), scikit-learn-intelex or scikit-learn (CPU).

cuML's `SVR` mirrors `sklearn.svm.SVR`, so every backend takes the same parameters and gives numpy
predictions (cuML via `output_type="numpy"`). A fitted cuML model is converted with `as_sklearn()`
before saving, so `infer` can load it on a machine with no GPU and no cuML.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Any

import numpy as np

from pawcore.errors import ConfigError

from .config import BACKENDS  # declared with --svr-backend

log = logging.getLogger(__name__)


def cuml_usable() -> bool:
    if importlib.util.find_spec("cuml") is None:
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def sklearnex_usable() -> bool:
    return importlib.util.find_spec("sklearnex") is not None


def resolve_backend(name: str) -> str:
    """'auto' -> the fastest available backend; an explicit one that is unavailable is an error."""
    if name not in BACKENDS:
        raise ConfigError(f"--svr-backend {name!r}: choose one of {list(BACKENDS)}.")
    if name == "auto":
        return "cuml" if cuml_usable() else "sklearnex" if sklearnex_usable() else "sklearn"
    if name == "cuml" and not cuml_usable():
        raise ConfigError("--svr-backend cuml needs cuML and a CUDA GPU. Install with `pip install -e '.[gpu]'` "
                          "(cuml-cu13, cupy-cuda13x: for CUDA 13 torch wheels, +cu13x; with +cu12x torch, "
                          "`pip install cuml-cu12 cupy-cuda12x`), or use --svr-backend auto / sklearnex / sklearn.")
    if name == "sklearnex" and not sklearnex_usable():
        raise ConfigError("--svr-backend sklearnex needs scikit-learn-intelex: `pip install -e '.[cpu-fast]'`, "
                          "or use --svr-backend sklearn.")
    return name


def parse_gamma(gamma: str | float) -> str | float:
    if gamma in ("scale", "auto"):
        return gamma
    try:
        return float(gamma)
    except (TypeError, ValueError):
        raise ConfigError(f"--gamma {gamma!r}: use 'scale', 'auto' or a positive number.") from None


def make_svr(backend: str = "auto", **params: Any):
    """An unfitted SVR of the given backend with sklearn.svm.SVR's parameters (C, epsilon, kernel, gamma...)."""
    backend = resolve_backend(backend)
    if "gamma" in params:
        params["gamma"] = parse_gamma(params["gamma"])
    if backend == "cuml":
        from cuml.svm import SVR

        return SVR(output_type="numpy", **params)
    if backend == "sklearnex":
        from sklearnex.svm import SVR

        return SVR(**params)
    from sklearn.svm import SVR

    return SVR(**params)


def predict_numpy(model, X) -> np.ndarray:
    """Predictions as a float64 numpy vector, whatever the backend or input array type."""
    pred = model.predict(X)
    if hasattr(pred, "get"):  # a CuPy array, should output_type have been overridden
        pred = pred.get()
    return np.asarray(pred, dtype=np.float64).reshape(-1)


def portable(model):
    """A model `infer` can load without a GPU: cuML -> scikit-learn via as_sklearn(); others unchanged."""
    if type(model).__module__.startswith("cuml"):
        if hasattr(model, "as_sklearn"):
            return model.as_sklearn()
        log.warning("This cuML version has no as_sklearn(); saving the cuML model itself, which needs cuML "
                    "(and a GPU) to load in infer.")
    return model
