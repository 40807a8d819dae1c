"""CLIP models of the feature bank (open_clip): the image embedding and the prompt similarities.

A CLIP source is a frozen model like the timm ones (stage2_svr/frozen.py): the bank runs `ClipNet` over
the cached images in the same batch loop and caches its output under the weights' SHA-256. Its outputs:

    clip:NAME=PATH           the image tower's embedding, L2-normalised (512 numbers for ViT-B-32)
    clip:NAME:prompts=PATH   its cosine similarity to each prompt's text embedding: image embedding (already
                             normalised) x normalised text embeddings, one column per prompt

Weights come from a local file only (nothing is downloaded at run time). Two formats are read:

    OpenAI's .pt     a TorchScript archive, as OpenAI released them and Kaggle's `openai-clip` dataset ships
                     them, or a plain state dict of OpenAI's fp16 weights: open_clip's `load_openai_model`
                     builds the model from the weights' own shapes, with OpenAI's QuickGELU and mean/std.
    open_clip        a checkpoint of open_clip's model NAME (a state dict in a .safetensors / .bin / .pt
                     file, or a training checkpoint holding {'state_dict': ...}): `open_clip.create_model(NAME,
                     pretrained=PATH)`, with the preprocessing open_clip gives it.

A plain state dict does not say which it is (the key names are the same), so its dtype decides: OpenAI
released fp16 weights, open_clip writes fp32. An fp32 copy of OpenAI's weights is read exactly by naming
open_clip's config for them, `clip:ViT-B-32-quickgelu=PATH`.

Preprocessing: the model's own input size (224 for ViT-B-32; CLIP's position embeddings fix it), its
mean/std and its geometry: the photo's central square (CLIP's shortest-side resize and centre crop), made
size x size with the project's one resize (`resize_square(..., "crop")`, INTER_AREA where CLIP uses bicubic).
All three are recorded in the stage-2 manifest. The other sources see the run's resize mode; a CLIP source
sees what CLIP was trained on, at the cost of the photo's edges outside the central square.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from pawcore.errors import ConfigError
from stage1_backbone.model import Preprocess

log = logging.getLogger(__name__)

CLIP_RESIZE = "crop"  # pawcore.images resize mode: the central square, as CLIP's resize + centre crop
RESIZE = "the central square (CLIP's shortest side + centre crop), made size x size with INTER_AREA"
OPENAI, OPEN_CLIP = "openai", "open_clip"


def _open_clip():
    if importlib.util.find_spec("open_clip") is None:
        raise ConfigError("CLIP sources need open_clip: pip install open-clip-torch (it comes with this project's "
                          "dependencies: pip install -e '.[dev,cpu-fast]').")
    import open_clip

    return open_clip


def check_name(name: str, text: str, prompts: bool = False) -> None:
    """ConfigError unless `name` is an open_clip model (its architecture, tokenizer and input size), and,
    for prompt features, one whose tokenizer ships with open_clip (a Hugging Face one would be downloaded)."""
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if name.split("-")[0].lower() in m.lower()][:8]
        raise ConfigError(f"--features item {text!r}: {name!r} is not an open_clip model (similar: {close}). "
                          f"OpenAI's CLIP ViT-B/32 is 'ViT-B-32'.")
    hf_tokenizer = open_clip.get_model_config(name).get("text_cfg", {}).get("hf_tokenizer_name")
    if prompts and hf_tokenizer:
        raise ConfigError(f"--features item {text!r}: {name}'s text tokenizer is Hugging Face's {hf_tokenizer!r}, "
                          f"which would be downloaded, and nothing is downloaded at run time. Use its image "
                          f"embedding (clip:{name}=PATH) or a model with open_clip's own tokenizer (e.g. ViT-B-32).")


def how_to_bring(name: str) -> str:
    """Where a user gets the weights file, said without downloading anything."""
    url = ""
    try:
        from open_clip.pretrained import get_pretrained_url

        url = get_pretrained_url(name, "openai")
    except Exception:  # an old open_clip: the generic advice below still holds
        pass
    where = (f"OpenAI's file, e.g. Kaggle's `openai-clip` dataset (/kaggle/input/openai-clip/{name}.pt)"
             + (f" or, on a machine with internet, {url}" if url else "")
             + ", or an open_clip checkpoint of the same model")
    return (f"Nothing is downloaded at run time: bring {where}, copy it to this machine (a Kaggle notebook: add "
            f"the dataset as an input) and name it as clip:{name}=PATH.")


def check_weights_file(name: str, path: str, spec: str) -> None:
    """ConfigError unless the CLIP source names an existing weights file."""
    if not path:
        raise ConfigError(f"--features {spec}: a CLIP source needs its weights file, as clip:{name}=PATH. "
                          f"{how_to_bring(name)}")
    if not Path(path).is_file():
        raise ConfigError(f"--features {spec}: weights file {path} not found. {how_to_bring(name)}")


def input_size(name: str) -> int:
    """The image size open_clip's config `name` was built for (checked against the file when it loads)."""
    size = _open_clip().get_model_config(name)["vision_cfg"]["image_size"]
    return int(size if isinstance(size, int) else size[-1])


def is_torchscript(path: str | Path) -> bool:
    """A TorchScript archive (torch.jit.save) has code/ and constants.pkl; a torch.save zip has neither."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def file_format(path: str | Path) -> str:
    """'openai' or 'open_clip' (see the module's docstring)."""
    if is_torchscript(path):
        return OPENAI
    if str(path).endswith(".safetensors"):
        return OPEN_CLIP
    try:
        try:  # memory-mapped: reads the pickle, not the hundreds of MB of weights
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a file in torch's legacy (non-zip) format cannot be mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"CLIP weights file {path} is neither a TorchScript archive nor a state dict that "
                          f"torch.load reads ({type(e).__name__}: {e}). Give OpenAI's .pt or an open_clip "
                          f"checkpoint.") from None
    if not isinstance(obj, dict) or "state_dict" in obj:
        return OPEN_CLIP  # open_clip's training checkpoints wrap the weights
    floats = [v.dtype for v in obj.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return OPENAI if floats and floats.count(torch.float16) > len(floats) // 2 else OPEN_CLIP


class ClipNet(nn.Module):
    """uint8 NCHW batch -> (L2-normalised image embedding, None), with the model's own mean/std.

    The second output stands where a timm model's logits stand (stage2_svr/frozen.py): CLIP has none.
    """

    def __init__(self, model: nn.Module, name: str, fmt: str):
        super().__init__()
        cfg = _open_clip().get_model_preprocess_cfg(model)
        size = cfg["size"]
        self.size = int(size if isinstance(size, int) else size[-1])
        self.mean, self.std = tuple(float(m) for m in cfg["mean"]), tuple(float(s) for s in cfg["std"])
        self.preprocess = Preprocess(self.mean, self.std)
        self.model = model.eval()
        self.name, self.format = name, fmt

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.model.encode_image(self.preprocess(images), normalize=True), None

    @torch.inference_mode()
    def text_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """(len(prompts), D) L2-normalised text embeddings, on the CPU in fp32."""
        tokens = _open_clip().get_tokenizer(self.name)(list(prompts))
        model = self.model.to("cpu")
        return model.encode_text(tokens, normalize=True).float()

    @property
    def record(self) -> dict:
        """What the manifest keeps of the model's preprocessing and file format."""
        return {"format": self.format, "mean": list(self.mean), "std": list(self.std), "resize": RESIZE}


def prompt_features(net: ClipNet, image_emb: np.ndarray, prompts: Sequence[str]) -> torch.Tensor:
    """(N, len(prompts)) cosine similarities: normalised image embeddings x normalised text embeddings."""
    text = net.text_embeddings(prompts)
    return torch.from_numpy(np.asarray(image_emb, np.float32)) @ text.T


def load_clip(name: str, path: str) -> ClipNet:
    """The CLIP model `name` with the weights of `path` (either format), in fp32 on the CPU."""
    open_clip = _open_clip()
    fmt = file_format(path)
    if fmt == OPENAI:
        model = open_clip.load_openai_model(path, precision="fp32", device="cpu")
    else:
        try:
            model = open_clip.create_model(name, pretrained=path, precision="fp32", device="cpu")
        # open_clip meets another architecture's weights with load_state_dict's RuntimeError, or an assert
        # while it resizes the position embeddings; either way the file is not this model
        except (RuntimeError, AssertionError, KeyError, ValueError) as e:
            raise ConfigError(f"clip:{name}={path}: the file does not hold open_clip's {name} "
                              f"({type(e).__name__}: {str(e)[:300]}). Name the model it holds, e.g. "
                              f"clip:ViT-B-16=PATH.") from None
    net = ClipNet(model, name, fmt)
    _check_architecture(net, name, path)
    log.info("CLIP %s from %s (%s format): %d px, mean %s, std %s", name, path, fmt, net.size, net.mean, net.std)
    return net


def _check_architecture(net: ClipNet, name: str, path: str) -> None:
    """An OpenAI file is built from its own shapes: refuse one that is not the model it is named as."""
    cfg = _open_clip().get_model_config(name)
    visual = net.model.visual
    want = {"embed dim": cfg["embed_dim"], "input size": input_size(name)}
    have = {"embed dim": int(net.model.text_projection.shape[1]), "input size": net.size}
    if "patch_size" in cfg["vision_cfg"] and hasattr(visual, "conv1"):
        want["patch size"], have["patch size"] = cfg["vision_cfg"]["patch_size"], int(visual.conv1.weight.shape[-1])
        want["width"], have["width"] = cfg["vision_cfg"]["width"], int(visual.conv1.weight.shape[0])
    wrong = {k: (have[k], want[k]) for k in want if have[k] != want[k]}
    if wrong:
        raise ConfigError(f"clip:{name}={path}: the file holds another CLIP than {name} "
                          f"({', '.join(f'{k} {h}, not {w}' for k, (h, w) in wrong.items())}). Name the model it "
                          f"holds (open_clip's name, e.g. ViT-B-16 or ViT-L-14).")


@functools.lru_cache(maxsize=2)  # one model serves its image pass, its prompts and the manifest's record
def cached_clip(name: str, path: str, mtime_ns: int, size: int) -> ClipNet:
    return load_clip(name, path)
