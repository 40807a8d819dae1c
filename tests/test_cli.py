"""The command line as users meet it: entry points, --version, -v anywhere, help, typed YAML, clear errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pawcore.config import resolve_config
from pawcore.errors import ConfigError
from pipeline import build_parser, main
from stage1_backbone.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def subcommand(name: str):
    return build_parser()._subparsers._group_actions[0].choices[name]


def parse(argv):
    return resolve_config(TrainConfig, build_parser().parse_args(argv))


def yaml_file(tmp_path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("package", ["pawcore", "stage1_backbone", "stage2_svr", "inference", "workflows", "advice"])
def test_every_module_imports(package):
    # A moved module with a stale (e.g. relative) import fails here, not in the user's first command.
    import importlib
    import pkgutil

    root = importlib.import_module(package)
    names = [m.name for m in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")]
    assert names, f"no modules found in {package}"
    for name in names:
        importlib.import_module(name)


def test_yaml_values_are_typed_like_the_command_line(tmp_path):
    cfg = parse(["train-backbone", "--data-dir", "d", "--config",
                 yaml_file(tmp_path, "lr: 3e-4\nepochs: '7'\nuse_meta: yes\nwarmup_epochs: 1\nfolds: 0\n")])
    assert cfg.lr == 3e-4 and isinstance(cfg.lr, float)  # YAML 1.1 reads 3e-4 as the string '3e-4'
    assert cfg.epochs == 7 and cfg.use_meta is True and cfg.warmup_epochs == 1.0 and cfg.folds == "0"
    assert cfg == parse(["train-backbone", "--data-dir", "d", "--lr", "3e-4", "--epochs", "7", "--use-meta",
                         "--warmup-epochs", "1", "--folds", "0"])


@pytest.mark.parametrize("text, match", [
    ("epochs: three\n", r"c\.yaml: epochs='three' is not valid; expected a whole number"),
    ("epochs: 2.5\n", r"epochs=2\.5 is not valid; expected a whole number"),
    ("lr: fast\n", r"lr='fast' is not valid; expected a number"),
    ("use_meta: maybe\n", r"use_meta='maybe' is not valid; expected true or false"),
    ("precision: [16]\n", r"precision=\[16\] is not valid"),
    ("logger: neptune\n", r"logger='neptune' is not valid; choose one of \['csv', 'tensorboard'"),
    ("epochs: [1\n", r"not valid YAML"),
])
def test_bad_yaml_values_are_the_projects_error_with_exit_2(tmp_path, capsys, text, match):
    config = yaml_file(tmp_path, text)
    with pytest.raises(ConfigError, match=match):
        parse(["train-backbone", "--data-dir", "d", "--config", config])
    assert main(["train-backbone", "--data-dir", str(tmp_path), "--config", config]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_required_data_dir_says_so(tmp_path, capsys):
    assert main(["train-backbone", "--artifacts-dir", str(tmp_path)]) == 2
    assert "--data-dir is required" in capsys.readouterr().err
    assert "(required" in subcommand("infer").format_help()


def test_check_data_unknown_split_is_a_clear_error(tmp_path, capsys):
    assert main(["check-data", "--data-dir", str(tmp_path), "--splits", "train,valid"]) == 2
    assert "unknown split(s) ['valid']; choose from ['train', 'test']" in capsys.readouterr().err


def test_help_groups_and_every_option_documented():
    subparsers = build_parser()._subparsers._group_actions[0].choices
    text = subcommand("train-backbone").format_help()
    for group in ("data options", "model options", "training options", "hardware options"):
        assert group in text
    model_section = text.split("model options:")[1].split("training options:")[0]
    assert "--backbone" in model_section and "--epochs" not in model_section
    for name, sub in subparsers.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings} has no help"


def test_verbose_after_the_command_and_version(capsys):
    parser = build_parser()
    assert parser.parse_args(["status", "-v"]).verbose is True
    assert parser.parse_args(["-v", "status"]).verbose is True
    assert parser.parse_args(["status"]).verbose is False
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["--version"])
    assert done.value.code == 0
    from importlib.metadata import version
    assert capsys.readouterr().out.split()[-1] == version("pawpularity-pipeline")


@pytest.mark.parametrize("entry", [["pawpularity"], [sys.executable, "-m", "pipeline"]])
def test_entry_points(entry, tmp_path):
    if entry[0] == "pawpularity":
        script = Path(sys.executable).with_name("pawpularity")
        if not script.exists():
            pytest.skip(f"console script not installed beside {sys.executable} (pip install -e . installs it)")
        entry = [str(script)]
    out = subprocess.run(entry + ["make-demo-data", "--out", str(tmp_path / "d"), "--n-train", "12", "--n-test", "3"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list((tmp_path / "d" / "train").glob("*.jpg"))) == 12
    assert subprocess.run(entry + ["--help"], cwd=tmp_path, capture_output=True, text=True).stdout.count(
        "train-backbone") >= 1


def test_yaml_defaults_and_command_line_wins(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("img_size: 160\nepochs: 3\nuse-meta: true\n")
    cfg = parse(["train-backbone", "--data-dir", "d", "--config", str(yaml), "--epochs", "7"])
    assert (cfg.img_size, cfg.epochs, cfg.use_meta, cfg.backbone) == (160, 7, True, "tf_efficientnet_lite0")


def test_unknown_yaml_key_lists_valid_keys(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("image_size: 160\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['image_size'\].*Valid keys: .*'img_size'"):
        parse(["train-backbone", "--data-dir", "d", "--config", str(yaml)])


def test_bad_choice_in_yaml(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("pretrained: imagenet\n")
    with pytest.raises(ConfigError, match=r"pretrained='imagenet' is not valid; choose one of \['auto', 'none', 'hub'\]"):
        parse(["train-backbone", "--data-dir", "d", "--config", str(yaml)])


def test_fit_svr_and_infer_flags():
    args = build_parser().parse_args(["fit-svr", "--svr-backend", "sklearn", "--C", "5", "--no-standardize"])
    assert (args.svr_backend, float(args.C), args.standardize) == ("sklearn", 5.0, False)  # --C also takes 'auto'
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit-svr", "--svr-backend", "gpu-magic"])
