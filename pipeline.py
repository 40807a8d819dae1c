#!/usr/bin/env python
"""Pawpularity pipeline CLI: parses arguments and dispatches to the stage packages.

    python pipeline.py demo                                   # generated data, all three stages
    python pipeline.py train-backbone --data-dir D [--run R]  # stage 1: fine-tune one model per fold
    python pipeline.py fit-svr [--run R]                      # stage 2: SVR per fold on a feature bank
    python pipeline.py infer --data-dir D --blend 0.5         # blend both heads -> submission.csv
    python pipeline.py score PHOTO... [--suggest-crop]        # a photo's score, as in a submission
    python pipeline.py serve                                  # the same in a web page (127.0.0.1:8000)

Every command takes --config x.yaml (defaults; the command line wins) and --help. Installed, the same
commands run as `pawpularity COMMAND ...` or `python -m pipeline COMMAND ...`.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable

# Settings only: these modules import nothing heavy, so --help and status start fast. Each command
# imports its own code (torch, Lightning, scikit-learn...) when it runs.
from advice.config import ScoreConfig, ServeConfig
from inference.config import InferConfig
from pawcore.config import add_config_arguments, resolve_config
from stage1_backbone.config import TrainConfig
from stage2_svr.config import SVRConfig
from workflows.config import CheckDataConfig, DemoConfig, MakeDemoDataConfig, StatusConfig


def _quiet_libraries() -> None:
    """Call after a command has imported its code: Lightning sets its own loggers to INFO on import."""
    names = ["sklearnex"]
    if "pytorch_lightning" in sys.modules:
        names += ["pytorch_lightning", "lightning", "lightning_fabric", "lightning.pytorch"]
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def _train_backbone(cfg: TrainConfig) -> None:
    from stage1_backbone.train import train_backbone

    _quiet_libraries()
    train_backbone(cfg)


def _fit_svr(cfg: SVRConfig) -> None:
    from stage2_svr.fit import fit_svr

    _quiet_libraries()
    fit_svr(cfg)


def _infer(cfg: InferConfig) -> None:
    from inference.infer import infer

    _quiet_libraries()
    infer(cfg)


def _score(cfg: ScoreConfig) -> int:
    from advice.cli import score_command

    _quiet_libraries()
    return score_command(cfg)


def _serve(cfg: ServeConfig) -> int:
    from advice.cli import serve_command

    _quiet_libraries()
    return serve_command(cfg)


def _demo(cfg: DemoConfig) -> None:
    from workflows.demo import run_demo

    _quiet_libraries()
    run_demo(cfg)


def _check_data(cfg: CheckDataConfig) -> int:
    from pawcore.check import check_data

    problems = check_data(cfg.data_dir, cfg.split_names, cfg.use_meta)
    if problems:
        print(f"{len(problems)} problem(s) in {cfg.data_dir}:", *problems, sep="\n  ")
        return 1
    print(f"{cfg.data_dir}: OK ({cfg.splits}: every row valid, every image decodes)")
    return 0


def _status(cfg: StatusConfig) -> None:
    from workflows.status import print_status

    print_status(cfg.artifacts_dir, cfg.run)


def _make_demo_data(cfg: MakeDemoDataConfig) -> None:
    from workflows.synthetic import make_dataset

    out = make_dataset(cfg.out, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed)
    print(f"Wrote a generated dataset to {out}")


@dataclass(frozen=True)
class Command:
    help: str
    config: type
    run: Callable[[Any], int | None]
    description: str = ""


COMMANDS = {
    "demo": Command("Generated data -> train-backbone -> fit-svr -> infer, on CPU in minutes.", DemoConfig, _demo),
    "check-data": Command("Validate a dataset (CSVs and every image) and list every problem.", CheckDataConfig,
                          _check_data),
    "train-backbone": Command("Stage 1: fine-tune a timm backbone per fold (BCE head).", TrainConfig, _train_backbone),
    "fit-svr": Command("Stage 2: an SVR per fold on a feature bank: each fold's fine-tuned embedding beside frozen "
                       "pretrained models' features (timm, CLIP), the sources and scaler chosen on OOF; with "
                       "--heads svr,gbdt also gradient-boosted trees per fold.", SVRConfig, _fit_svr),
    "infer": Command("Blend the heads of every fold on the test photos -> submission.csv.", InferConfig, _infer,
                     "final = blend x NN + (1 - blend) x SVR (the stage-2 heads' mean when fit-svr fitted a GBDT "
                     "too), clipped to [1, 100]."),
    "status": Command("Which folds of each stage are done, being trained or missing (reads only).", StatusConfig,
                      _status),
    "make-demo-data": Command("Write a small generated dataset in the Kaggle layout.", MakeDemoDataConfig,
                              _make_demo_data),
    "score": Command("Score photos with a finished run exactly as infer would; suggest a crop.", ScoreConfig, _score,
                     "Each photo's final score (same folds, heads, blend and TTA as the run's submission) and each "
                     "head's score. Exit code 1 if any photo failed."),
    "serve": Command("A web page (and JSON API) to score photos, rank them, explain, crop.", ServeConfig, _serve),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pawpularity-pipeline")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


class _Version(argparse.Action):
    """--version, looked up only when asked for (importlib.metadata is slow to load)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging (also accepted after the command).")
    parser.add_argument("--version", action=_Version, help="Print the installed version and exit.")
    # -v after the command too (`pipeline.py fit-svr -v`); SUPPRESS keeps a -v given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="Debug logging.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.description or command.help,
                           parents=[common])
        add_config_arguments(p, command.config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pawcore.errors import PipelineError
    from pawcore.ranks import is_global_zero

    level = logging.DEBUG if args.verbose else logging.INFO if is_global_zero() else logging.WARNING
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    command = COMMANDS[args.command]
    try:
        return command.run(resolve_config(command.config, args)) or 0
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
