"""Every command's settings: one typed dataclass each, exposed on the command line and in `--config x.yaml`.

An option is declared once, as a field made by `option(...)`: its default, --help text, valid choices,
check, --help group and whether the command needs it. Options that several commands share (--run,
--artifacts-dir, --data-dir, --device, --batch-size, --num-workers) live in the small base classes below
and mean the same everywhere; a command that needs another default or help text says so with `override`.

Precedence, as in timm's train.py: dataclass defaults < YAML file < command line. Every value, from the
command line, a YAML file or code (`InferConfig(blend="2")`), goes through the same conversion and checks
in `Config.__post_init__`: `lr: 3e-4` is the float 0.0003, `epochs: three` or `--port 0` is a ConfigError
naming the value, what is valid and the default. Unknown YAML keys are an error that lists the valid ones.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from .errors import ConfigError

C = TypeVar("C", bound="Config")

# A check takes an already converted value and returns None when it is valid, else what is valid.
Check = Callable[[Any], "str | None"]


def option(default: Any, help: str, choices: tuple | None = None, group: str = "", required: bool = False,
           check: Check | None = None, positional: bool = False, metavar: str | None = None,
           bare: Any = None) -> Any:
    """A dataclass field with its --help text, optional valid choices and check, --help group, and whether
    the command needs it (given on the command line or in --config). `positional=True` makes it a
    positional argument taking any number of values (type `tuple[str, ...]`). `bare`: the value of the
    flag given without one (a former on/off flag that now takes a value keeps its old spelling)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "group": group, "required": required, "check": check,
        "positional": positional, "metavar": metavar, "bare": bare})


def override(cls: type, name: str, **changes: Any) -> Any:
    """The option `name` of `cls`, with another default, help or required flag for one command.

    The choices and the check stay those of the one declaration, so the option still means the same.
    """
    f = cls.__dataclass_fields__[name]
    default = changes.pop("default", f.default)
    unknown = set(changes) - {"help", "required", "group", "metavar"}
    assert not unknown, f"override() cannot change {sorted(unknown)}"
    return dataclasses.field(default=default, metadata={**f.metadata, **changes})


# --- checks -------------------------------------------------------------------------------------------

def in_range(low: float | None = None, high: float | None = None, low_open: bool = False) -> Check:
    """low <= value <= high (low < value with low_open), finite; either bound may be None."""
    if high is None:
        valid = f"must be {'>' if low_open else '>='} {low}"
    else:
        valid = f"must lie in {'(' if low_open else '['}{low}, {high}]"

    def check(value: float) -> str | None:
        if not math.isfinite(value):
            return valid
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or value <= high
        return None if above and below else valid
    return check


def device_name(value: str) -> str | None:
    """auto (cuda if present, else cpu: stage1_backbone/predict.py:pick_device), cpu, cuda, cuda:1, mps ..."""
    if re.fullmatch(r"auto|cpu|mps|(cuda|xpu)(:\d+)?", value):
        return None
    return "use auto (cuda if present, else cpu), cpu, cuda, cuda:N, mps or xpu"


# --- conversion ---------------------------------------------------------------------------------------

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
    """An integer, from an int or its text; 3.5 and True are refused (a typo, not a number of epochs)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"not an integer: {value!r}")
    return int(value) if isinstance(value, (int, float)) else int(str(value).strip())


def parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    return float(value)  # float('3e-4') works: YAML 1.1 reads 3e-4 as a string


def parse_str(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)) or value is None:
        raise ValueError(f"expected a single value, got {value!r}")
    return str(value)


def parse_strs(value: Any) -> tuple[str, ...]:
    """One or more strings (a YAML list, the command line's values, or one string)."""
    return tuple(parse_str(v) for v in value) if isinstance(value, (list, tuple)) else (parse_str(value),)


PARSERS: dict[str, Callable[[Any], Any]] = {"bool": parse_bool, "int": parse_int, "float": parse_float,
                                            "str": parse_str, "tuple[str, ...]": parse_strs}
TYPE_WORDS = {"bool": "true or false", "int": "a whole number", "float": "a number (e.g. 3e-4)", "str": "a string",
              "tuple[str, ...]": "one or more strings"}


def _kind(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else f.type.__name__


def flag(f: dataclasses.Field) -> str:
    """How the user names the option: --field-name, or the metavar of a positional (PHOTO)."""
    return f.metadata["metavar"] if f.metadata.get("positional") else "--" + f.name.replace("_", "-")


class OptionError(ConfigError):
    """One option's value is not valid: what was received, what is valid, the default, and where it came
    from. A value from a YAML file names the file and its key; from the command line or code, the --flag."""

    def __init__(self, f: dataclasses.Field, value: Any, valid: str, where: str = "", in_file: bool = False):
        self.field, self.value, self.valid = f, value, valid
        default = "" if f.metadata.get("required") else f" (default: {f.default!r})"
        if in_file:
            text = (f"{where}: {f.name}={value!r} is not valid; {valid}{default}. Fix it in {where}, or give "
                    f"{flag(f)} on the command line.")
        else:
            text = (f"{where}: " if where else "") + f"{flag(f)} {value!r} is not valid; {valid}{default}."
        super().__init__(text)

    def at(self, where: str, in_file: bool) -> "OptionError":
        return OptionError(self.field, self.value, self.valid, where, in_file)


def checked_value(f: dataclasses.Field, value: Any, where: str = "") -> Any:
    """`value` converted to the field's type and checked against its choices and check, or an OptionError."""
    kind = _kind(f)
    try:
        value_ = PARSERS[kind](value)
    except (TypeError, ValueError):
        raise OptionError(f, value, f"expected {TYPE_WORDS[kind]}", where) from None
    choices = f.metadata.get("choices")
    if choices and value_ not in choices:
        raise OptionError(f, value, f"choose one of {list(choices)}", where)
    check = f.metadata.get("check")
    problem = check(value_) if check else None
    if problem:
        raise OptionError(f, value, problem, where)
    return value_


def check_option(cls: type, name: str, value: Any) -> Any:
    """The declared conversion and check of one option, for a library function given the value directly."""
    return checked_value(cls.__dataclass_fields__[name], value)


@dataclass
class Config:
    """Base of every command's settings: each field is converted and checked when the object is built,
    whether from the command line, a YAML file or code, so a bad value never reaches the work."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, checked_value(f, getattr(self, f.name), type(self).__name__))


# --- options shared by several commands ---------------------------------------------------------------

@dataclass
class DataOptions(Config):
    data_dir: str = option("", "Competition layout: train.csv + train/<Id>.jpg, test.csv + test/<Id>.jpg.",
                           group="data")


@dataclass
class RunOptions(Config):
    artifacts_dir: str = option("artifacts", "Root of all outputs.", group="data")
    run: str = option("default", "Run name: its files are under <artifacts-dir>/<run>/.", group="data")


@dataclass
class RunSettings(RunOptions, DataOptions):
    """Where a command reads and writes: shared by the three stages."""


@dataclass
class DeviceOptions(Config):
    """Where models run to extract features or score photos (not training: see train-backbone's options)."""

    device: str = option("auto", "Where models run: auto (cuda if present, else cpu), cpu, cuda, cuda:1 ...",
                         check=device_name, group="hardware")
    batch_size: int = option(64, "Images per forward pass.", check=in_range(1), group="hardware")


@dataclass
class LoaderOptions(Config):
    num_workers: int = option(0, "DataLoader worker processes that decode images (0: in the main process).",
                              check=in_range(0), group="hardware")


# --- the command line and YAML ------------------------------------------------------------------------

def config_from_dict(cls: type[C], values: Mapping[str, Any], files: Mapping[str, str] | None = None) -> C:
    """Build `cls` from a mapping, converting and checking each value as the command line would.

    `files` maps the keys that came from a YAML file to its path (the others came from the command line),
    so that unknown keys, unconvertible values, bad choices and failed checks name the file or the --flag.
    """
    files = files or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{files.get(unknown[0], 'config')}: unknown key(s) {unknown} for {cls.__name__}. "
                          f"Valid keys: {sorted(fields)}.")
    try:
        return cls(**values)
    except OptionError as e:
        name = e.field.name
        raise e.at(files.get(name, ""), name in files) from None


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add `--config` and one `--field-name` option per dataclass field (or a positional), defaults left to
    the dataclass, in --help groups."""
    parser.add_argument("--config", type=Path, help="YAML file of defaults; the command line still wins.")
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        group_name = f.metadata.get("group", "")
        if group_name and group_name not in groups:
            groups[group_name] = parser.add_argument_group(f"{group_name} options")
        target = groups.get(group_name, parser)
        help_text = ("(required, here or in --config) " if f.metadata.get("required") else "") + f.metadata["help"]
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS}
        kind = _kind(f)
        if f.metadata.get("positional"):
            target.add_argument(f.name, nargs="*", type=parse_str, metavar=f.metadata["metavar"], help=help_text,
                                **kwargs)
            continue
        kwargs["dest"] = f.name
        if kind == "bool":
            target.add_argument(flag(f), action=argparse.BooleanOptionalAction,
                                help=f"{help_text} (default: {f.default})", **kwargs)
            continue
        kwargs["type"] = PARSERS[kind]
        if f.metadata.get("bare") is not None:
            kwargs.update(nargs="?", const=f.metadata["bare"])
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        else:
            kwargs["metavar"] = f.metadata.get("metavar") or f.name.upper()
        shown = "" if f.metadata.get("required") else f" (default: {f.default!r})"
        target.add_argument(flag(f), help=help_text + shown, **kwargs)


NOT_OPTIONS = ("config", "command", "verbose")  # on the parsed namespace, but not settings


def resolve_config(cls: type[C], args: argparse.Namespace) -> C:
    """Merge YAML defaults (if --config) with the explicitly given command-line options, then check them."""
    values: dict[str, Any] = {}
    config_path = getattr(args, "config", None)
    if config_path is not None:
        values.update(read_yaml(Path(config_path)))
    files = dict.fromkeys(values, str(config_path))
    given = {k: v for k, v in vars(args).items() if k not in NOT_OPTIONS}
    values.update(given)
    for name in given:
        files.pop(name, None)  # the command line wins, and answers for its own values
    cfg = config_from_dict(cls, values, files)
    for f in dataclasses.fields(cls):
        if f.metadata.get("required") and not getattr(cfg, f.name):
            raise ConfigError(f"{flag(f)} is required: {f.metadata['help']} Give it on the command line or in "
                              f"--config.")
    return cfg


def read_yaml(path: Path) -> dict[str, Any]:
    """A --config file's mapping, keys with - or _ alike."""
    import yaml  # only commands given --config pay for it

    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file. Pass the path of a YAML file.")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {path}: not valid YAML ({e}).") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option: value, got {type(loaded).__name__}.")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


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
