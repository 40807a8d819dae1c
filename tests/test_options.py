"""Every command's options: declared once, checked once, whether they come from the command line, YAML or code."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from advice.config import ScoreConfig, ServeConfig
from inference.config import InferConfig
from pawcore.config import resolve_config
from pawcore.errors import ConfigError
from pipeline import COMMANDS, build_parser, main
from stage1_backbone.config import TrainConfig
from stage2_svr.config import SVRConfig
from workflows.config import CheckDataConfig, MakeDemoDataConfig

ROOT = Path(__file__).resolve().parents[1]
# What each command needs on the command line before its other options can be tried.
NEEDS = {"train-backbone": ["--data-dir", "d"], "infer": ["--data-dir", "d"], "check-data": ["--data-dir", "d"],
         "score": ["photo.jpg"]}


def resolve(argv: list[str]):
    args = build_parser().parse_args(argv)
    return resolve_config(COMMANDS[args.command].config, args)


def commands_with(option: str) -> list[str]:
    return [name for name, c in COMMANDS.items() if option in {f.name for f in dataclasses.fields(c.config)}]


CODE_BUILT = [
    (InferConfig, {"blend": "2"}, r"--blend '2' is not valid; must lie in \[0, 1\]"),
    (InferConfig, {"blend": "half"}, r"--blend 'half' is not valid; give the NN head's weight in \[0, 1\], or 'auto'"),
    (ServeConfig, {"port": 0}, r"--port 0 is not valid; must lie in \[1, 65535\] \(default: 8000\)"),
    (ServeConfig, {"max_files": 0}, r"--max-files 0 is not valid; must be >= 1"),
    (ServeConfig, {"max_upload_mb": -1}, r"--max-upload-mb -1 is not valid; must be > 0"),
    (ScoreConfig, {"min_crop": 0}, r"--min-crop 0 is not valid; must lie in \(0, 1\]"),
    (ScoreConfig, {"device": "gpu"}, r"--device 'gpu' is not valid; use auto \(cuda if present, else cpu\)"),
    (SVRConfig, {"frozen_size": "big"}, r"--frozen-size 'big' is not valid; use stage1, native or a number"),
    (SVRConfig, {"C": -1}, r"--C -1 is not valid; must be auto or a number > 0"),
    (SVRConfig, {"epsilon": -0.5}, r"--epsilon -0.5 is not valid; must be >= 0"),
    (CheckDataConfig, {"splits": "train,valid"},
     r"--splits 'train,valid' is not valid; unknown split\(s\) \['valid'\]; choose from \['train', 'test'\]"),
    (TrainConfig, {"epochs": "three"}, r"--epochs 'three' is not valid; expected a whole number \(default: 5\)"),
    (TrainConfig, {"logger": "neptune"}, r"--logger 'neptune' is not valid; choose one of \['csv'"),
    (MakeDemoDataConfig, {"n_train": 0}, r"--n-train 0 is not valid; must be >= 1"),
]


@pytest.mark.parametrize("cls, values, match", CODE_BUILT,
                         ids=[f"{c.__name__}-{next(iter(v))}" for c, v, _ in CODE_BUILT])
def test_a_config_built_in_code_is_checked_like_the_command_line(cls, values, match):
    with pytest.raises(ConfigError, match=rf"{cls.__name__}: {match}"):
        cls(**values)


def test_code_built_values_are_converted_and_replace_is_checked_too():
    cfg = SVRConfig(epsilon=5, batch_size="32")
    assert cfg.epsilon == 5.0 and isinstance(cfg.epsilon, float) and cfg.batch_size == 32
    assert InferConfig(blend="auto").blend_weight is None and InferConfig(blend="0.3").blend_weight == 0.3
    with pytest.raises(ConfigError, match="--port 70000"):
        dataclasses.replace(ServeConfig(), port=70000)


def test_command_line_errors_name_the_flag_and_exit_2(capsys):
    assert main(["serve", "--port", "0"]) == 2
    assert "error: --port 0 is not valid; must lie in [1, 65535] (default: 8000)." in capsys.readouterr().err
    assert main(["score", "x.jpg", "--min-crop", "1.5"]) == 2  # before any model loads
    assert "--min-crop 1.5 is not valid; must lie in (0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize("option, default", [("device", "auto"), ("run", "default"), ("artifacts_dir", "artifacts"),
                                             ("batch_size", 64)])
def test_shared_options_mean_the_same_in_every_command(option, default):
    names = commands_with(option)
    assert len(names) >= 4, names
    flag = "--" + option.replace("_", "-")
    value = {"device": "cuda:1", "run": "r2", "artifacts_dir": "elsewhere", "batch_size": 8}[option]
    for name in names:
        if name in ("demo", "status") and option == "run":
            continue  # their own default (demo: 'demo'; status: every run), same meaning
        if name == "train-backbone" and option == "batch_size":
            continue  # a training setting there, with its own default (32)
        assert getattr(resolve([name, *NEEDS.get(name, [])]), option) == default, name
        assert getattr(resolve([name, *NEEDS.get(name, []), flag, str(value)]), option) == value, name
    for name in commands_with("device"):
        with pytest.raises(ConfigError, match=r"^--device 'gpu' is not valid; use auto"):
            resolve([name, *NEEDS.get(name, []), "--device", "gpu"])


CONFIG_FILES = [
    ("demo", "blend: auto\n", "blend", "auto"),
    ("status", "run: swin\n", "run", "swin"),
    ("check-data", "data-dir: d\nsplits: test\n", "split_names", ("test",)),
    ("make-demo-data", "n_train: 5\n", "n_train", 5),
    ("score", "photos: [a.jpg, b.jpg]\nsuggest_crop: yes\n", "photos", ("a.jpg", "b.jpg")),
    ("serve", "port: '9000'\n", "port", 9000),
    ("fit-svr", "frozen_size: 192\n", "frozen_size", "192"),
    ("infer", "data_dir: d\nblend: 0.3\n", "blend", "0.3"),
    ("train-backbone", "data_dir: d\nepochs: 2\n", "epochs", 2),
]


@pytest.mark.parametrize("name, yaml_text, option, expected", CONFIG_FILES)
def test_config_file_works_for_every_command(tmp_path, name, yaml_text, option, expected):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    assert getattr(resolve([name, "--config", str(path)]), option) == expected


def test_every_command_is_tried_with_a_config_file():
    assert {name for name, *_ in CONFIG_FILES} == set(COMMANDS)


def test_a_bad_value_in_a_config_file_names_the_file_and_the_command_line_wins(tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text("port: 0\n")
    with pytest.raises(ConfigError, match=r"serve\.yaml: port=0 is not valid; must lie in \[1, 65535\].*--port"):
        resolve(["serve", "--config", str(path)])
    assert resolve(["serve", "--config", str(path), "--port", "8080"]).port == 8080


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_verbose_after_every_command(name):
    assert build_parser().parse_args([name, *NEEDS.get(name, []), "-v"]).verbose is True


def test_help_says_what_options_do_not_what_was_measured():
    for name, sub in build_parser()._subparsers._group_actions[0].choices.items():
        text = sub.format_help()
        assert not re.search(r"measured|RESULTS\.md|\(README\)", text), f"{name} --help cites a measurement"


HEAVY = {"torch", "pytorch_lightning", "lightning", "timm", "sklearn", "pandas", "scipy", "cv2", "open_clip", "xgboost"}


def imported_modules(*argv: str, cwd: Path = ROOT) -> set[str]:
    out = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "pipeline.py"), *argv], cwd=cwd,
                         capture_output=True, text=True, timeout=120)
    return {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines()
            if line.startswith("import time:")}


def test_help_and_status_import_nothing_heavy(tmp_path):
    assert not imported_modules("--help") & HEAVY
    assert not imported_modules("train-backbone", "--help") & HEAVY
    assert not imported_modules("fit-svr", "--help") & HEAVY  # CLIP (open_clip) and the GBDT (xgboost) load lazily
    assert not imported_modules("status", "--artifacts-dir", str(tmp_path)) & HEAVY  # no runs: exit 2
    run = tmp_path / "r"
    run.mkdir()
    (run / "folds.csv").write_text("Id,fold\na,0\nb,1\nc,2\n")
    out = subprocess.run([sys.executable, str(ROOT / "pipeline.py"), "status", "--artifacts-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "not started [0, 1, 2]" in out.stdout, out.stderr
    assert not imported_modules("status", "--artifacts-dir", str(tmp_path)) & HEAVY
