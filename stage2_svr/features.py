"""The fold's scaler applied on the features' own device, the same way by `fit-svr` and `infer`.

(The SVR's input itself is assembled by stage2_svr/bank.py.) Both stages import this module;
neither imports the other's command module.
"""
from __future__ import annotations

import torch
from sklearn.preprocessing import StandardScaler


def standardize(X: torch.Tensor, scaler: StandardScaler | None) -> torch.Tensor:
    """Apply a fitted scaler on X's own device (the GPU path stays on the GPU)."""
    if scaler is None:
        return X
    mean = torch.as_tensor(scaler.mean_, dtype=X.dtype, device=X.device)
    scale = torch.as_tensor(scaler.scale_, dtype=X.dtype, device=X.device)
    return (X - mean) / scale
