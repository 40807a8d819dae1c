"""One typed dataclass per stage, exposed on the command line and in `--config x.yaml`.

Precedence, as in timm's train.py: dataclass defaults < YAML file < command line. Unknown keys are an
error that lists the valid ones. Each field's `metadata["help"]` is its --help text.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from .errors import ConfigError

C = TypeVar("C")


def option(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A dataclass field with its --help text (and optional valid choices)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def config_from_dict(cls: type[C], values: Mapping[str, Any], source: str = "config") -> C:
    """Build `cls` from a mapping; unknown keys and bad choices are a ConfigError naming the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} for {cls.__name__}. Valid keys: {sorted(fields)}."
        )
    for name, value in values.items():
        choices = fields[name].metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{source}: {name}={value!r} is not valid; choose one of {list(choices)}.")
    return cls(**values)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one `--field-name` option per dataclass field, defaults left to the dataclass."""
    parser.add_argument("--config", type=Path, help="YAML file of defaults; the command line still wins.")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        type_name = f.type if isinstance(f.type, str) else f.type.__name__
        if type_name == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
            parser.add_argument(flag, help=f"{help_text} (default: {f.default})", **kwargs)
            continue
        kwargs["type"] = {"int": int, "float": float}.get(type_name, str)
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(flag, help=f"{help_text} (default: {f.default!r})", **kwargs)


def resolve_config(cls: type[C], args: argparse.Namespace) -> C:
    """Merge YAML defaults (if --config) with the explicitly given command-line options."""
    values: dict[str, Any] = {}
    config_path = getattr(args, "config", None)
    if config_path is not None:
        if not Path(config_path).is_file():
            raise ConfigError(f"--config {config_path}: no such file. Pass the path of a YAML file.")
        loaded = yaml.safe_load(Path(config_path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {config_path}: expected a mapping of option: value, got {type(loaded).__name__}.")
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in vars(args).items() if k not in ("config", "command", "func", "verbose")})
    return config_from_dict(cls, values, source=str(config_path or "command line"))


def parse_folds(text: str, n_folds: int) -> list[int]:
    """'' -> all folds; '0,2' -> [0, 2]; anything else is a ConfigError."""
    if not str(text).strip():
        return list(range(n_folds))
    try:
        folds = sorted({int(part) for part in str(text).split(",") if part.strip()})
    except ValueError:
        raise ConfigError(f"--folds {text!r}: expected comma-separated fold numbers like '0,2'.") from None
    bad = [k for k in folds if not 0 <= k < n_folds]
    if bad:
        raise ConfigError(f"--folds {text!r}: fold(s) {bad} out of range; valid folds are 0..{n_folds - 1}.")
    return folds
