"""The decoded-image cache: built once per (split, size), re-used by later runs, rebuilt when files change."""
from __future__ import annotations

import os
import shutil

import numpy as np

from pawcore import images
from pawcore.data import read_split
from stage1_backbone.config import TrainConfig
from stage1_backbone.train import train_backbone

from .conftest import TINY


def count_decodes(monkeypatch) -> list:
    calls = []
    real = images.load_rgb
    monkeypatch.setattr(images, "load_rgb", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    return calls


def test_second_train_backbone_decodes_nothing(tiny_data, tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    cfg = TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(tmp_path), **{**TINY, "epochs": 1}, folds="0")
    train_backbone(cfg)
    assert len(calls) == 24
    calls.clear()
    train_backbone(TrainConfig(**{**cfg.__dict__, "folds": "1", "run": "another"}))   # other run, same data
    assert calls == [], "the second run re-uses the cache: no image is decoded"


def test_cache_rebuilt_when_a_file_or_the_size_changes(tiny_data, tmp_path, monkeypatch):
    # A copy: touching a photo of the session's shared dataset would change the image-cache key of every
    # later test's run (their cached embeddings would no longer match).
    data = shutil.copytree(tiny_data, tmp_path / "data")
    cache = tmp_path / "cache"
    split = read_split(data, "train")
    first = np.array(images.cached_images(split.image_paths, 32, cache, "train"))
    calls = count_decodes(monkeypatch)
    again = images.cached_images(split.image_paths, 32, cache, "train")
    assert calls == [] and np.array_equal(first, again)
    images.cached_images(split.image_paths, 48, cache, "train")   # another size: another cache
    assert len(calls) == 24
    calls.clear()
    path = split.image_paths[3]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # the file was replaced
    images.cached_images(split.image_paths, 32, cache, "train")
    assert len(calls) == 24 and len(list(cache.glob("images-train-32px-*.npy"))) == 2
