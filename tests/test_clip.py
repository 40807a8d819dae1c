"""CLIP sources of the feature bank: both weight formats, prompt features, caching, replay and refusal.

Models are random-weight CLIPs built here (no download): a tiny open_clip config registered for the tests,
and once (marked slow) the real ViT-B-32 architecture, end to end. open_clip's tokenizer vocabulary ships
inside the package, so the prompts need no network either.
"""
from __future__ import annotations

import json

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn

from inference.config import InferConfig
from inference.infer import infer
from inference.predictor import RunPredictor
from pawcore.data import read_split
from pawcore.errors import ArtifactError, ConfigError
from pawcore.images import SplitImages, load_rgb
from pawcore.run import run_dir
from stage1_backbone.manifest import Stage1Manifest
from stage2_svr.bank import FeatureBank
from stage2_svr.clip import file_format
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr
from stage2_svr.manifest import Stage2Manifest
from stage2_svr.frozen import load_frozen
from stage2_svr.sources import (DEFAULT_PROMPTS, check_available, parse_source, parse_sources, read_prompts,
                                with_prompts)

TINY = "pawtest-clip"  # 32 px, patch 8, width 64, one layer per tower: a CLIP in ~3.5M parameters (mostly vocabulary)
TINY_CFG = {"embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    """Registers the tiny config with open_clip (as a user's own config file would be) and returns its name."""
    folder = tmp_path_factory.mktemp("clip-config")
    (folder / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(folder)
    return TINY


def _random_clip(name: str, seed: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=None).eval()


def save_openai_torchscript(model: nn.Module, path, image_size: int) -> None:
    """A TorchScript archive holding OpenAI's state dict (fp16, OpenAI's key names, plus the input_resolution,
    context_length and vocab_size entries its archives carry): what `load_openai_model` reads from OpenAI's .pt."""
    sd = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    sd.update(input_resolution=torch.tensor(image_size), context_length=torch.tensor(77),
              vocab_size=torch.tensor(49408))
    root = nn.Module()
    for key, tensor in sd.items():
        *parents, leaf = key.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_buffer(leaf, tensor)
    torch.jit.save(torch.jit.script(root), str(path))


def save_formats(model: nn.Module, folder, image_size: int) -> dict:
    """The same random weights in each format the CLIP source reads."""
    files = {"openai-torchscript": folder / "openai-jit.pt", "openai-state-dict": folder / "openai-sd.pt",
             "open_clip": folder / "open_clip.pt", "open_clip-checkpoint": folder / "epoch_1.pt"}
    save_openai_torchscript(model, files["openai-torchscript"], image_size)
    torch.save({k: v.half() for k, v in model.state_dict().items()}, files["openai-state-dict"])
    torch.save(model.state_dict(), files["open_clip"])  # fp32, as open_clip writes and releases them
    torch.save({"epoch": 1, "name": "t", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               files["open_clip-checkpoint"])
    return files


@pytest.fixture(scope="session")
def tiny_files(tiny_clip, tmp_path_factory) -> dict:
    return save_formats(_random_clip(tiny_clip), tmp_path_factory.mktemp("clip-weights"), 32)


def _direct(model: nn.Module, name: str, paths, size: int, prompts) -> tuple[np.ndarray, np.ndarray]:
    """(image embeddings, prompt similarities) computed here with open_clip alone: each photo's central square
    (CLIP's geometry) at the model's size, CLIP's mean/std, encode_image / encode_text normalised, their dot
    products."""
    x = torch.from_numpy(np.stack([load_rgb(p, size, "crop") for p in paths])).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)) / torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        img = model.float().encode_image(x, normalize=True)
        txt = model.encode_text(open_clip.get_tokenizer(name)(list(prompts)), normalize=True)
    return img.numpy(), (img @ txt.T).numpy()


def _reference_model(fmt: str, path, name: str) -> nn.Module:
    """The model open_clip's own loaders make of the file: OpenAI's for OpenAI files, else create_model's."""
    if fmt.startswith("openai"):
        return open_clip.load_openai_model(str(path), precision="fp32", device="cpu").eval()
    return open_clip.create_model(name, pretrained=str(path)).eval()


# ------------------------------------------------------------------ names, prompts, formats


def test_clip_source_specs_parse_and_refuse_what_cannot_work(tiny_files):
    """Catches: a CLIP spec that does not round-trip (the manifest would name another source), frozen-size
    resizing a CLIP (its position embeddings fix its size), :logits accepted for a model without classes, an
    unknown architecture accepted, prompts for a model whose tokenizer would be downloaded from the Hugging
    Face hub, and a missing weights file that does not say how to bring it."""
    path = tiny_files["open_clip"]
    for text in (f"clip:ViT-B-32={path}", f"clip:ViT-B-32:prompts={path}"):
        assert parse_source(text).spec == text
    source = parse_source(f"clip:ViT-B-32:prompts={path}")
    assert source.clip and source.prompts and source.clip_name == "ViT-B-32"
    assert source.image_source.spec == f"clip:ViT-B-32={path}"
    sized = parse_sources(f"tf_efficientnet_lite0,clip:ViT-B-32={path}", frozen_size=160)
    assert [s.size for s in sized] == [160, None]
    for bad, message in ((f"clip:ViT-B-32@160={path}", "drop @160"), (f"clip:ViT-B-32:logits={path}", "no class logits"),
                         (f"clip:NoSuchNet-1={path}", "not an open_clip model"),
                         (f"clip:nllb-clip-base:prompts={path}", "would be downloaded")):
        with pytest.raises(ConfigError, match=message):
            parse_source(bad)
    with pytest.raises(ConfigError, match=r"needs its weights file.*Nothing is downloaded.*openai-clip"):
        check_available(parse_source("clip:ViT-B-32"))
    with pytest.raises(ConfigError, match=r"not found\. Nothing is downloaded.*openaipublic"):
        check_available(parse_source("clip:ViT-B-32=/no/such/ViT-B-32.pt"))


def test_prompts_default_and_from_a_file(tmp_path):
    """Catches: a default prompt list other than the founding notebook's eleven, blank lines or duplicates
    becoming feature columns, and an empty or missing --clip-prompts file passing silently."""
    assert read_prompts("") == ("Cute", "Funny", "Derp", "Small", "Happy", "Sad", "Aggressive", "Friendly", "Old",
                                "Young", "Love") == DEFAULT_PROMPTS
    f = tmp_path / "p.txt"
    f.write_text("a photo of a cute dog\n\n  sleepy cat \n")
    assert read_prompts(str(f)) == ("a photo of a cute dog", "sleepy cat")
    for text, message in (("\n\n", "holds no prompt"), ("x\nx\n", "more than once")):
        f.write_text(text)
        with pytest.raises(ConfigError, match=message):
            read_prompts(str(f))
    with pytest.raises(ConfigError, match="file not found"):
        read_prompts(str(tmp_path / "none.txt"))


def test_both_file_formats_are_recognised(tiny_files):
    """Catches: OpenAI's files (TorchScript, or a plain fp16 state dict) read as open_clip's (GELU instead of
    OpenAI's QuickGELU: silently other features), or an open_clip checkpoint read as OpenAI's."""
    assert {k: file_format(p) for k, p in tiny_files.items()} == {
        "openai-torchscript": "openai", "openai-state-dict": "openai", "open_clip": "open_clip",
        "open_clip-checkpoint": "open_clip"}


def test_a_file_of_another_architecture_is_refused(tiny_files):
    """Catches: OpenAI's loader building whatever the file holds, so clip:ViT-B-32=PATH would silently run
    another CLIP (here the tiny one) under ViT-B-32's name; and open_clip's strict load error reaching the user
    as a bare RuntimeError instead of naming the fix."""
    with pytest.raises(ConfigError, match=r"holds another CLIP than ViT-B-32 \(embed dim 32, not 512"):
        load_frozen(parse_source(f"clip:ViT-B-32={tiny_files['openai-torchscript']}"))
    with pytest.raises(ConfigError, match=r"does not hold open_clip's ViT-B-32.*Name the model it holds"):
        load_frozen(parse_source(f"clip:ViT-B-32={tiny_files['open_clip']}"))


# ------------------------------------------------------------------ features equal open_clip's own


@pytest.mark.parametrize("fmt", ["openai-torchscript", "openai-state-dict", "open_clip", "open_clip-checkpoint"])
def test_bank_features_equal_a_direct_open_clip_computation(tiny_clip, tiny_files, tiny_run, tiny_data, tmp_path, fmt):
    """The bank's clip:NAME (image embedding) and clip:NAME:prompts (similarities) equal open_clip's own
    computation on the same file and photos. Catches: the wrong mean/std or input size, an unnormalised
    embedding or text embedding, a file read with the wrong format, or prompts in another order."""
    path = tiny_files[fmt]
    prompts = ("Cute", "Sad", "a dog")
    emb_source, prompt_source = with_prompts(
        [parse_source(f"clip:{tiny_clip}={path}"), parse_source(f"clip:{tiny_clip}:prompts={path}")], prompts)
    paths = read_split(tiny_data, "train").image_paths
    bank = FeatureBank(Stage1Manifest.load(run_dir(tiny_run, "default")),
                       SplitImages(paths, tmp_path / "cache", "train"), tmp_path / "features", device="cpu")
    emb, sims = bank.frozen(emb_source), bank.frozen(prompt_source)
    expected_emb, expected_sims = _direct(_reference_model(fmt, path, tiny_clip), tiny_clip, paths, 32, prompts)
    assert emb.shape == (24, 32) and sims.shape == (24, 3)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, expected_emb, atol=2e-5)
    np.testing.assert_allclose(sims, expected_sims, atol=2e-5)
    assert sims.std() > 0  # random weights still tell the photos apart
    if fmt.startswith("open_clip"):  # the very weights saved: same features as the model in memory
        np.testing.assert_allclose(emb, _direct(_random_clip(tiny_clip), tiny_clip, paths, 32, prompts)[0], atol=2e-5)


def test_prompt_features_share_the_image_pass_and_are_cached_per_prompt_list(tiny_clip, tiny_files, run_copy,
                                                                            tmp_path, count_passes):
    """Catches: a second image pass for :prompts (one pass serves both), a cache that hands back similarities
    to the old prompts after --clip-prompts changed, and prompts not recorded (infer could not replay them)."""
    path = tiny_files["open_clip"]
    features = f"tuned,clip:{tiny_clip}={path},clip:{tiny_clip}:prompts={path}"
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", features=features, select="none"))
    assert count_passes == [24]
    manifest = Stage2Manifest.load(run_dir(run_copy, "default"))
    record = manifest.frozen[f"clip:{tiny_clip}:prompts={path}"]
    assert record["prompts"] == list(DEFAULT_PROMPTS) and record["dim"] == 11 and record["size"] == 32
    assert record["format"] == "open_clip" and record["mean"] == pytest.approx(list(OPENAI_DATASET_MEAN))
    assert "central square" in record["resize"]
    tuned_dim = Stage1Manifest.load(run_dir(run_copy, "default")).model["feature_dim"]
    assert manifest.n_features == tuned_dim + 32 + 11 == manifest.frozen[f"clip:{tiny_clip}={path}"]["dim"] + 11 + tuned_dim
    cached = sorted(p.name for p in (run_copy / "features").glob(f"clip-{tiny_clip}-*.npy"))
    assert len(cached) == 2 and any("-prompts-" in n for n in cached)

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Happy\nOld\n")
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", features=features, select="none",
                      clip_prompts=str(prompts)))
    assert count_passes == [24], "the image embedding comes from the cache"
    manifest = Stage2Manifest.load(run_dir(run_copy, "default"))
    assert manifest.frozen[f"clip:{tiny_clip}:prompts={path}"]["prompts"] == ["Happy", "Old"]
    assert manifest.head_sources("svr")[2].prompt_texts == ("Happy", "Old")
    assert len(list((run_copy / "features").glob(f"clip-{tiny_clip}-*-prompts-*.npy"))) == 2


# ------------------------------------------------------------------ replay by infer, refusal of a changed file


def test_infer_replays_clip_sources_and_the_gbdt_head_and_refuses_a_changed_file(tiny_clip, tiny_files, run_copy,
                                                                               tiny_data, tmp_path):
    """infer's code path, fed the training photos with every feature recomputed (fresh image cache, no feature
    cache), gives fit-svr's OOF of both stage-2 heads (SVR and GBDT, on CLIP image and prompt features) to
    1e-6; --blend auto weighs the three heads; a changed or missing CLIP file is refused naming the fix.
    Catches: prompts not replayed from the manifest, the GBDT head given other columns than at fit-svr, its
    recalibration not applied, a stage 2 silently run on other CLIP weights."""
    path = tmp_path / "clip.pt"
    path.write_bytes(tiny_files["openai-torchscript"].read_bytes())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Cute\nFunny\nSad\n")
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", select="none", heads="svr,gbdt",
                      recalibrate="on", clip_prompts=str(prompts),
                      features=f"tuned,clip:{tiny_clip}={path},clip:{tiny_clip}:prompts={path}"))
    prompts.write_text("Other\n")  # after fit-svr: infer must use the recorded prompts, not the file
    run = run_dir(run_copy, "default")
    manifest = Stage2Manifest.load(run)
    assert manifest.head_kinds == ["svr", "gbdt"] and manifest.head_features("gbdt") == manifest.features
    train = read_split(tiny_data, "train")
    predictor = RunPredictor(run, device="cpu", cache_dir=None)
    bank = predictor.bank(SplitImages(train.image_paths, tmp_path / "image-cache", "train"))
    for kind in ("svr", "gbdt"):
        oof = pd.read_csv(Stage2Manifest.oof_file_of(run, kind), dtype={"Id": str})
        for k in (0, 1):
            scores = predictor.fold_heads(bank, k)[kind]
            val = oof[oof["fold"] == k]
            rows = [train.ids.index(i) for i in val["Id"]]
            np.testing.assert_allclose(scores[rows], val["pred"].to_numpy(), rtol=0, atol=1e-6)

    sub = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), blend="auto",
                            out=str(tmp_path / "s.csv")))
    spec = json.loads((tmp_path / "ensemble.json").read_text())
    assert set(spec["weights"]) == {"default:nn", "default:svr", "default:gbdt"}
    assert sum(spec["weights"].values()) == pytest.approx(1.0) and len(sub) == 8
    assert "GBDT features" in (tmp_path / "report.md").read_text()

    path.write_bytes(tiny_files["openai-state-dict"].read_bytes())  # the same weights, another file: another hash
    with pytest.raises(ArtifactError, match=r"the file changed\). Bring back the file it was fitted with.*fit-svr"):
        infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), out=str(tmp_path / "t.csv")))
    path.unlink()
    with pytest.raises(ArtifactError, match=r"not available here.*Nothing is downloaded.*fit-svr"):
        infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), out=str(tmp_path / "t.csv")))


# ------------------------------------------------------------------ the real architecture, end to end


@pytest.mark.slow
def test_vit_b_32_end_to_end_in_both_formats(run_copy, tiny_data, tmp_path):
    """`fit-svr --features tuned,clip:ViT-B-32=PATH,clip:ViT-B-32:prompts=PATH --heads svr,gbdt` and infer,
    with a random-weight ViT-B-32 saved as OpenAI's TorchScript .pt and as an open_clip training checkpoint.
    Catches: anything of the real architecture the tiny config does not exercise (224 px, 512-d embedding,
    12 layers, OpenAI's fp16 weights) breaking the path from file to submission."""
    model = _random_clip("ViT-B-32", seed=11)
    state = model.state_dict()
    openai_file, open_clip_file = tmp_path / "ViT-B-32.pt", tmp_path / "epoch_32.pt"
    save_openai_torchscript(model, openai_file, 224)
    torch.save({"epoch": 32, "state_dict": {f"module.{k}": v.half() for k, v in state.items()}}, open_clip_file)
    del model, state
    for path, fmt in ((openai_file, "openai"), (open_clip_file, "open_clip")):
        fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", select="none", heads="svr,gbdt",
                          features=f"tuned,clip:ViT-B-32={path},clip:ViT-B-32:prompts={path}", device="cpu"))
        manifest = Stage2Manifest.load(run_dir(run_copy, "default"))
        record = manifest.frozen[f"clip:ViT-B-32={path}"]
        assert (record["size"], record["dim"], record["format"]) == (224, 512, fmt)
        tuned_dim = Stage1Manifest.load(manifest.run).model["feature_dim"]
        assert manifest.n_features == tuned_dim + 512 + 11 and manifest.head_kinds == ["svr", "gbdt"]
        sub = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), blend="auto", device="cpu",
                                out=str(tmp_path / fmt / "submission.csv")))
        assert len(sub) == 8 and sub["Pawpularity"].between(1, 100).all()
