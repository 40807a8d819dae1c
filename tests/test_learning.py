"""The pipeline learns: on generated photos whose score is visible (the pet's size), the NN head, the
SVR head (default feature bank) and their blend each beat the mean baseline by a clear margin.

A target-scaling bug (say Pawpularity fed as 0..100 to the BCE head, predictions left on 0..1, or the
SVR fitted on a rescaled target), or features that ignore the photo, would leave a head at or above the
mean baseline; every other test would still pass.
"""
from __future__ import annotations

import pytest

from pawcore.metrics import oof_table
from inference.ensemble_oof import run_oof
from pawcore.run import run_dir
from stage1_backbone.manifest import Stage1Manifest
from stage1_backbone.config import TrainConfig
from stage1_backbone.train import train_backbone
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr
from workflows.synthetic import make_dataset

# The packaged ImageNet weights (offline), small photos, 2 folds, 3 epochs.
LEARN = dict(backbone="tf_efficientnet_lite0", pretrained="auto", img_size=64, n_folds=2, epochs=3, batch_size=16,
             lr=1e-3, num_workers=0, seed=3)
# Measured by this test (2-core CPU, 2026-11-23; deterministic on the CPU): overall OOF RMSE NN 15.116,
# SVR 8.243, blend 0.5 10.113 against a mean baseline of 18.728, i.e. 0.81, 0.44 and 0.54 of it.
# (Before the feature bank, the SVR on the standardised fine-tuned embedding alone stayed at 18.466.)
# The margin leaves ~10% headroom on the weakest head for other machines and library versions.
MARGIN = 0.9


@pytest.mark.slow
def test_every_head_beats_the_mean_baseline_on_a_learnable_signal(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=120, n_test=4, seed=11, min_side=64, max_side=128)
    art = str(tmp_path / "art")
    train_backbone(TrainConfig(data_dir=str(data), artifacts_dir=art, **LEARN))
    fit_svr(SVRConfig(artifacts_dir=art, svr_backend="sklearn"))
    run = run_dir(art, "default")
    table = oof_table(run_oof(run), {"NN": "nn", "SVR": "svr", "blend": "blend"},
                      Stage1Manifest.load(run).mean_baseline)
    overall = table.set_index("fold").loc["overall"]
    print("\n" + table.to_string(index=False))
    for head in ("NN", "SVR", "blend"):
        assert overall[head] < MARGIN * overall["mean baseline"], (head, overall.to_dict())
