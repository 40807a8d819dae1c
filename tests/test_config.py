"""Config: dataclass defaults < YAML file < command line; unknown keys list the valid ones."""
import pytest

from pawcore.errors import ConfigError
from pipeline import build_parser
from pawcore.config import resolve_config
from stage1_backbone.config import TrainConfig


def parse(argv):
    return resolve_config(TrainConfig, build_parser().parse_args(argv))


def test_yaml_defaults_and_command_line_wins(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("img_size: 160\nepochs: 3\nuse-meta: true\n")
    cfg = parse(["train-backbone", "--config", str(yaml), "--epochs", "7"])
    assert (cfg.img_size, cfg.epochs, cfg.use_meta, cfg.backbone) == (160, 7, True, "tf_efficientnet_lite0")


def test_unknown_yaml_key_lists_valid_keys(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("image_size: 160\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['image_size'\].*Valid keys: .*'img_size'"):
        parse(["train-backbone", "--config", str(yaml)])


def test_bad_choice_in_yaml(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("pretrained: imagenet\n")
    with pytest.raises(ConfigError, match=r"pretrained='imagenet' is not valid; choose one of \['auto', 'none', 'hub'\]"):
        parse(["train-backbone", "--config", str(yaml)])


def test_fit_svr_and_infer_flags():
    args = build_parser().parse_args(["fit-svr", "--svr-backend", "sklearn", "--C", "5", "--no-standardize"])
    assert (args.svr_backend, args.C, args.standardize) == ("sklearn", 5.0, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit-svr", "--svr-backend", "gpu-magic"])
