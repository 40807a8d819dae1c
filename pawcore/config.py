"""One typed dataclass per stage, exposed on the command line and in `--config x.yaml`.

Precedence, as in timm's train.py: dataclass defaults < YAML file < command line. A YAML value goes
through the same conversion and checks as the same option typed on the command line (`lr: 3e-4` is the
float 0.0003, `epochs: three` is an error), and unknown keys are an error that lists the valid ones.
Each field's metadata holds its --help text, valid choices and --help group.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import yaml

from .errors import ConfigError

C = TypeVar("C")


def option(default: Any, help: str, choices: tuple | None = None, group: str = "", required: bool = False) -> Any:
    """A dataclass field with its --help text, optional valid choices, --help group, and whether the
    command needs it (given on the command line or in --config)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "group": group,
                                                        "required": required})


@dataclass
class RunSettings:
    """Where a command reads and writes: shared by every stage's settings."""

    data_dir: str = option("", "Competition layout: train.csv + train/<Id>.jpg, test.csv + test/<Id>.jpg.",
                           group="data")
    artifacts_dir: str = option("artifacts", "Root of all outputs.", group="data")
    run: str = option("default", "Run name: outputs go to <artifacts-dir>/<run>/.", group="data")


def parse_bool(value: Any) -> bool:
    """YAML/CLI booleans: true/false, yes/no, on/off, 1/0 (any case)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_int(value: Any) -> int:
    """An integer, from an int or its text; 3.0 and True are refused (a typo, not a number of epochs)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"not an integer: {value!r}")
    return int(value) if isinstance(value, (int, float)) else int(str(value).strip())


def parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    return float(value)  # float('3e-4') works: YAML 1.1 reads 3e-4 as a string


def parse_str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected a single value, got a {type(value).__name__}")
    return str(value)


PARSERS: dict[str, Callable[[Any], Any]] = {"bool": parse_bool, "int": parse_int, "float": parse_float,
                                            "str": parse_str}
TYPE_WORDS = {"bool": "true or false", "int": "a whole number", "float": "a number (e.g. 3e-4)", "str": "a string"}


def _type_name(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else f.type.__name__


def config_from_dict(cls: type[C], values: Mapping[str, Any], source: str = "config") -> C:
    """Build `cls` from a mapping, converting each value as the command line would.

    Unknown keys, unconvertible values and bad choices are a ConfigError naming the valid ones.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} for {cls.__name__}. Valid keys: {sorted(fields)}."
        )
    typed = {}
    for name, value in values.items():
        kind = _type_name(fields[name])
        try:
            typed[name] = PARSERS[kind](value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {name}={value!r} is not valid; expected {TYPE_WORDS[kind]} "
                              f"(default: {fields[name].default!r}).") from None
        choices = fields[name].metadata.get("choices")
        if choices and typed[name] not in choices:
            raise ConfigError(f"{source}: {name}={value!r} is not valid; choose one of {list(choices)}.")
    return cls(**typed)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one `--field-name` option per dataclass field, defaults left to the dataclass, in --help groups."""
    parser.add_argument("--config", type=Path, help="YAML file of defaults; the command line still wins.")
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        group_name = f.metadata.get("group", "")
        if group_name and group_name not in groups:
            groups[group_name] = parser.add_argument_group(f"{group_name} options")
        target = groups.get(group_name, parser)
        flag = "--" + f.name.replace("_", "-")
        help_text = ("(required, here or in --config) " if f.metadata.get("required") else "") + f.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        kind = _type_name(f)
        if kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
            target.add_argument(flag, help=f"{help_text} (default: {f.default})", **kwargs)
            continue
        kwargs["type"] = PARSERS[kind]
        kwargs["metavar"] = f.name.upper()
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
            kwargs.pop("metavar")
        shown = "" if f.metadata.get("required") else f" (default: {f.default!r})"
        target.add_argument(flag, help=help_text + shown, **kwargs)


def resolve_config(cls: type[C], args: argparse.Namespace) -> C:
    """Merge YAML defaults (if --config) with the explicitly given command-line options."""
    values: dict[str, Any] = {}
    config_path = getattr(args, "config", None)
    if config_path is not None:
        if not Path(config_path).is_file():
            raise ConfigError(f"--config {config_path}: no such file. Pass the path of a YAML file.")
        try:
            loaded = yaml.safe_load(Path(config_path).read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"--config {config_path}: not valid YAML ({e}).") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {config_path}: expected a mapping of option: value, got {type(loaded).__name__}.")
        from_yaml = {str(k).replace("-", "_"): v for k, v in loaded.items()}
        config_from_dict(cls, from_yaml, source=str(config_path))  # errors name the file, not the merge
        values.update(from_yaml)
    values.update({k: v for k, v in vars(args).items() if k not in ("config", "command", "func", "verbose")})
    cfg = config_from_dict(cls, values, source="command line")
    for f in dataclasses.fields(cls):
        if f.metadata.get("required") and not getattr(cfg, f.name):
            raise ConfigError(f"--{f.name.replace('_', '-')} is required: {f.metadata['help']} Give it on the "
                              f"command line or in --config.")
    return cfg


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
