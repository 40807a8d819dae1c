"""`pipeline.py demo`: the whole pipeline on its embedded default, a generated dataset, on CPU in minutes.

make-demo-data -> train-backbone -> fit-svr -> infer, with small settings that fit a 2-core CPU.
Pass --data-dir to run the same small settings on real photos instead.
"""
from __future__ import annotations

import logging
from pathlib import Path

from inference.config import InferConfig
from inference.infer import infer
from pawcore.run import run_dir
from stage1_backbone.config import TrainConfig
from stage1_backbone.train import train_backbone
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr

from .config import DemoConfig
from .synthetic import make_dataset

log = logging.getLogger(__name__)

# Small but real: pretrained tf_efficientnet_lite0 at 128 px, 5 folds, 4 epochs.
DEMO_TRAIN = dict(img_size=128, epochs=4, batch_size=32, n_folds=5)


def run_demo(cfg: DemoConfig | None = None) -> Path:
    cfg = cfg or DemoConfig()
    data_dir = cfg.data_dir
    if not data_dir:
        data_dir = str(Path(cfg.artifacts_dir) / "demo-data")
        if not (Path(data_dir) / "train.csv").is_file():
            log.info("Generating the demo dataset in %s", data_dir)
            make_dataset(data_dir)
    common = dict(artifacts_dir=cfg.artifacts_dir, run=cfg.run)
    train_backbone(TrainConfig(data_dir=data_dir, **common, **DEMO_TRAIN))
    fit_svr(SVRConfig(**common))
    infer(InferConfig(data_dir=data_dir, blend=cfg.blend, **common))
    return run_dir(cfg.artifacts_dir, cfg.run).submission_csv
