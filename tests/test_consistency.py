"""One photo, the same numbers in every stage: SVR features, preprocessing, the model's input size."""
from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import torch

from inference.predictor import RunPredictor
from pawcore.data import read_split
from pawcore.images import cached_images, images_key
from pawcore.run import run_dir
from stage2_svr.backends import predict_numpy
from stage2_svr.embeddings import embedding_cache_path, fold_embeddings
from stage2_svr.features import standardize


def test_svr_features_of_fit_svr_and_infer_agree(tiny_run, tiny_data):
    """fit-svr extracted its features where it ran (the GPU when there is one: the fixture uses device
    auto); infer often runs on a CPU machine. The SVR must see the same numbers in both."""
    run = run_dir(tiny_run, "default")
    predictor = RunPredictor(run, device="cpu")
    train = read_split(tiny_data, "train")
    pixels = cached_images(train.image_paths, predictor.img_size, run.image_cache, "train")
    oof = pd.read_csv(run.stage("stage2") / "oof_svr.csv", dtype={"Id": str})
    for k in predictor.folds:
        weights_sha = predictor.stage1["folds"][str(k)]["files"][f"fold{k}/model.safetensors"]
        fitted_on = np.load(embedding_cache_path(run.stage("stage2") / "emb", k, "train", weights_sha,
                                                 images_key(pixels), flip=False))
        at_infer = fold_embeddings(predictor.models[k], pixels, None, device="cpu")
        assert at_infer.dtype == torch.float32 and fitted_on.shape == tuple(at_infer.shape)
        np.testing.assert_allclose(at_infer.numpy(), fitted_on, rtol=1e-5, atol=1e-5)
        # And the fold's SVR, fed the infer-time features of its validation photos, replays its OOF.
        val = oof[oof["fold"] == k]
        rows = np.array([train.ids.index(i) for i in val["Id"]])
        scaler = joblib.load(run.fold_dir("stage2", k) / "scaler.joblib")
        svr = joblib.load(run.fold_dir("stage2", k) / "svr.joblib")
        pred = np.clip(predict_numpy(svr, standardize(at_infer[rows], scaler).numpy()), 1, 100)
        np.testing.assert_allclose(pred, val["pred"].to_numpy(), atol=1e-4)
