"""The model: a timm backbone giving pooled pre-logits embeddings, then a linear head (+ metadata).

Stage 2 uses `embed` (frozen, eval mode) for the SVR; the NN head turns the same embedding into a
score, so one forward pass gives both heads' inputs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from pawcore.errors import ArtifactError
from pawcore.images import INTERPOLATION

from .pretrained import create_backbone


class Preprocess(nn.Module):
    """uint8 NCHW -> normalised float. mean/std are not in the weights file but in the fold's config.json."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) / self.std


class PawpularityNet(nn.Module):
    """uint8 images -> (pooled embedding, score logit). Preprocessing is part of the model."""

    def __init__(self, backbone: nn.Module, n_meta: int = 0, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None):
        super().__init__()
        # For training: what the weights asked for, else timm's pretrained_cfg of the backbone. A saved
        # fold always passes its own (see load_fold_model): today's timm defaults may differ.
        cfg = timm.data.resolve_model_data_config(backbone)
        self.preprocess = Preprocess(cfg["mean"] if mean is None else mean, cfg["std"] if std is None else std)
        self.backbone = backbone
        self.n_meta = n_meta
        self.head = nn.Linear(backbone.num_features + n_meta, 1)

    @property
    def feature_dim(self) -> int:
        return self.backbone.num_features

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logits features of uint8 NCHW images."""
        return self.backbone(self.preprocess(images))

    def head_logits(self, emb: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_meta:
            emb = torch.cat([emb, meta.to(emb.dtype)], dim=1)
        return self.head(emb).squeeze(-1)

    def forward(self, images: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        return self.head_logits(self.embed(images), meta)


def logits_to_score(logits: torch.Tensor) -> torch.Tensor:
    """The BCE head's logit -> Pawpularity on 0..100."""
    return torch.sigmoid(logits.float()) * 100.0


def save_weights(model: PawpularityNet, path: Path) -> None:
    """safetensors: no pickle, so loading a checkpoint never runs code."""
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))


def load_fold_model(model_config: dict[str, Any], weights: Path) -> PawpularityNet:
    """Rebuild a fold's model from its saved config (never today's defaults) and load its weights.

    Preprocessing too: the input size, mean and std saved at training time, not those of the timm
    installed today (another version, or a backbone trained with other weights' normalisation).
    """
    interpolation = model_config.get("interpolation", INTERPOLATION)
    if interpolation != INTERPOLATION:
        raise ArtifactError(f"{weights.parent} was trained on images resized with {interpolation!r}; this code "
                            f"resizes with {INTERPOLATION!r}. Use the pipeline version that trained it, or re-train.")
    model = PawpularityNet(create_backbone(model_config["backbone"], pretrained="none",
                                           img_size=int(model_config["img_size"])),
                           n_meta=int(model_config["n_meta"]), mean=model_config.get("mean"), std=model_config.get("std"))
    model.load_state_dict(load_file(str(weights)))
    return model.eval()
