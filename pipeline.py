#!/usr/bin/env python
"""Pawpularity pipeline CLI: parses arguments and dispatches to the stage packages.

    python pipeline.py demo                                   # generated data, all three stages
    python pipeline.py train-backbone --data-dir D [--run R]  # stage 1: fine-tune one model per fold
    python pipeline.py fit-svr [--run R]                      # stage 2: SVR per fold on frozen embeddings
    python pipeline.py infer --data-dir D --blend 0.5         # blend both heads -> submission.csv
    python pipeline.py score PHOTO... [--suggest-crop]        # a photo's score, as in a submission
    python pipeline.py serve                                  # the same in a web page (127.0.0.1:8000)

Every stage command takes --config x.yaml (defaults; the command line wins) and --help. Installed, the
same commands run as `pawpularity COMMAND ...` or `python -m pipeline COMMAND ...`.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings


def _train_backbone(args: argparse.Namespace) -> None:
    from stage1_backbone.config import TrainConfig
    from stage1_backbone.train import train_backbone
    from pawcore.config import resolve_config

    train_backbone(resolve_config(TrainConfig, args))


def _fit_svr(args: argparse.Namespace) -> None:
    from pawcore.config import resolve_config
    from stage2_svr.config import SVRConfig
    from stage2_svr.fit import fit_svr

    fit_svr(resolve_config(SVRConfig, args))


def _infer(args: argparse.Namespace) -> None:
    from inference.config import InferConfig
    from inference.infer import infer
    from pawcore.config import resolve_config

    infer(resolve_config(InferConfig, args))


def _check_data(args: argparse.Namespace) -> int:
    from pawcore.check import check_data
    from pawcore.data import SPLITS
    from pawcore.errors import ConfigError

    splits = tuple(part.strip() for part in args.splits.split(",") if part.strip())
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise ConfigError(f"--splits {args.splits!r}: unknown split(s) {unknown}; choose from {list(SPLITS)}, "
                          f"comma-separated (e.g. --splits train,test).")
    problems = check_data(args.data_dir, splits, args.use_meta)
    if problems:
        print(f"{len(problems)} problem(s) in {args.data_dir}:", *problems, sep="\n  ")
        return 1
    print(f"{args.data_dir}: OK ({args.splits}: every row valid, every image decodes)")
    return 0


def _status(args: argparse.Namespace) -> None:
    from workflows.status import print_status

    print_status(args.artifacts_dir, args.run)


def _demo(args: argparse.Namespace) -> None:
    from workflows.demo import run_demo

    run_demo(args.artifacts_dir, args.run, args.data_dir, args.blend)


def _make_demo_data(args: argparse.Namespace) -> None:
    from workflows.synthetic import make_dataset

    out = make_dataset(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    print(f"Wrote a generated dataset to {out}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pawpularity-pipeline")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    from pawcore.config import add_config_arguments
    from stage1_backbone.config import TrainConfig
    from stage2_svr.config import SVRConfig
    from inference.config import InferConfig

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging (also accepted after the command).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    # -v after the command too (`pipeline.py fit-svr -v`); SUPPRESS keeps a -v given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="Debug logging.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=kwargs.pop("description", help), parents=[common],
                              **kwargs)

    p = command("demo", "Generated data -> train-backbone -> fit-svr -> infer, on CPU in minutes.")
    p.add_argument("--artifacts-dir", default="artifacts", help="Root of all outputs (default: %(default)s).")
    p.add_argument("--run", default="demo", help="Run name (default: %(default)s).")
    p.add_argument("--data-dir", default="", help="Real data instead of the generated set (same small settings).")
    p.add_argument("--blend", default="0.5", help="NN weight of the blend, or 'auto' (default: %(default)s).")
    p.set_defaults(func=_demo)

    p = command("check-data", "Validate a dataset (CSVs and every image) and list every problem.")
    p.add_argument("--data-dir", required=True, help="Folder in the competition layout (required).")
    p.add_argument("--splits", default="train,test", help="Comma-separated: train, test or both (default: %(default)s).")
    p.add_argument("--use-meta", action="store_true", help="Also require the 12 metadata flag columns.")
    p.set_defaults(func=_check_data)

    p = command("train-backbone", "Stage 1: fine-tune a timm backbone per fold (BCE head).")
    add_config_arguments(p, TrainConfig)
    p.set_defaults(func=_train_backbone)

    p = command("fit-svr", "Stage 2: fit an SVR per fold on frozen embeddings of stage 1's backbones.")
    add_config_arguments(p, SVRConfig)
    p.set_defaults(func=_fit_svr)

    p = command("infer", "Blend both heads of every fold on the test photos -> submission.csv.",
                description="final = blend x NN + (1 - blend) x SVR, clipped to [1, 100].")
    add_config_arguments(p, InferConfig)
    p.set_defaults(func=_infer)

    p = command("status", "Which folds of each stage are done, being trained or missing (reads only).")
    p.add_argument("--artifacts-dir", default="artifacts", help="Root of all outputs (default: %(default)s).")
    p.add_argument("--run", default="", help="One run (default: every run in --artifacts-dir).")
    p.set_defaults(func=_status)

    p = command("make-demo-data", "Write a small generated dataset in the Kaggle layout.")
    p.add_argument("--out", default="artifacts/demo-data", help="Folder to write (default: %(default)s).")
    p.add_argument("--n-train", type=int, default=240, help="Training photos (default: %(default)s).")
    p.add_argument("--n-test", type=int, default=60, help="Test photos (default: %(default)s).")
    p.add_argument("--seed", type=int, default=0, help="Random seed (default: %(default)s).")
    p.set_defaults(func=_make_demo_data)

    # Photo advice (issue 14): `score` and `serve` replay a submission's ensemble on single photos.
    from advice.cli import add_advice_commands
    add_advice_commands(sub, [common])
    return parser


def _quiet_libraries() -> None:
    import pytorch_lightning  # noqa: F401  (it sets its own loggers to INFO on import; override after)

    for name in ("pytorch_lightning", "lightning", "lightning_fabric", "lightning.pytorch", "sklearnex"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pawcore.ranks import is_global_zero

    level = logging.DEBUG if args.verbose else logging.INFO if is_global_zero() else logging.WARNING
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    _quiet_libraries()
    from pawcore.errors import PipelineError

    try:
        return args.func(args) or 0
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
