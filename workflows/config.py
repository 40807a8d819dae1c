"""Settings of the commands that are not a stage: demo, status, check-data, make-demo-data."""
from __future__ import annotations

from dataclasses import dataclass

from inference.config import InferConfig
from pawcore.config import Config, DataOptions, RunOptions, in_range, option, override


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def splits_value(text: str) -> str | None:
    from pawcore.data import SPLITS  # here, not at the top: --help and status need no pandas

    unknown = sorted(set(_split_list(text)) - set(SPLITS))
    if unknown or not _split_list(text):
        return f"unknown split(s) {unknown}; choose from {list(SPLITS)}, comma-separated (e.g. train,test)"
    return None


@dataclass
class DemoConfig(RunOptions, DataOptions):
    data_dir: str = override(DataOptions, "data_dir", help="Real data instead of the generated set (same small "
                             "settings); default: <artifacts-dir>/demo-data, generated if missing.")
    run: str = override(RunOptions, "run", default="demo")
    blend: str = override(InferConfig, "blend")


@dataclass
class StatusConfig(RunOptions):
    run: str = override(RunOptions, "run", default="", help="One run (default: every run in --artifacts-dir).")


@dataclass
class CheckDataConfig(DataOptions):
    data_dir: str = override(DataOptions, "data_dir", required=True)
    splits: str = option("train,test", "Comma-separated: train, test or both.", check=splits_value, group="data")
    use_meta: bool = option(False, "Also require the 12 metadata flag columns.")

    @property
    def split_names(self) -> tuple[str, ...]:
        return _split_list(self.splits)


@dataclass
class MakeDemoDataConfig(Config):
    out: str = option("artifacts/demo-data", "Folder to write.")
    n_train: int = option(240, "Training photos.", check=in_range(1))
    n_test: int = option(60, "Test photos.", check=in_range(1))
    seed: int = option(0, "Random seed.")
