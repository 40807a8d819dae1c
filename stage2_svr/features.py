"""The SVR's input, built the same way by `fit-svr` (training rows) and `infer` (test photos).

Both stages import this module; neither imports the other's command module.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler


def features(emb: torch.Tensor, meta: np.ndarray | None) -> torch.Tensor:
    """The SVR's input: the embedding, plus the metadata flags when --use-meta."""
    if meta is None:
        return emb
    return torch.cat([emb, torch.from_numpy(meta).to(emb.device, emb.dtype)], dim=1)


def standardize(X: torch.Tensor, scaler: StandardScaler | None) -> torch.Tensor:
    """Apply a fitted scaler on X's own device (the GPU path stays on the GPU)."""
    if scaler is None:
        return X
    mean = torch.as_tensor(scaler.mean_, dtype=X.dtype, device=X.device)
    scale = torch.as_tensor(scaler.scale_, dtype=X.dtype, device=X.device)
    return (X - mean) / scale
