"""Stage 1's training ingredients: mixup, head LR and layer-wise decay, EMA, gradient accumulation.

Each on the tiny fixtures (timm's test_efficientnet at 32 px), so the file runs in well under a minute.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EMAWeightAveraging
from safetensors.torch import load_file
from timm.optim import param_groups_layer_decay

from pawcore.data import read_split
from pawcore.errors import ConfigError
from pawcore.run import run_dir
from stage1_backbone.config import MODEL_KEYS, TrainConfig
from stage1_backbone.lit import EpochSummary, LitPawpularity, mixup_draw
from stage1_backbone.manifest import Stage1Manifest
from stage1_backbone.model import PawpularityNet, logits_to_score
from stage1_backbone.predict import embed_and_score
from stage1_backbone.pretrained import create_backbone
from stage1_backbone.train import fold_loaders, model_settings, train_backbone

from .conftest import TINY


def _net(seed: int = 0) -> PawpularityNet:
    torch.manual_seed(seed)
    return PawpularityNet(create_backbone("test_efficientnet", "none"))


def _batch(n: int = 6, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {"image": torch.from_numpy(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)),
            "target": torch.tensor(rng.uniform(1, 100, n), dtype=torch.float32),
            "meta": torch.zeros(n, 0)}


# ---------------------------------------------------------------- mixup
def test_mixup_mixes_targets_with_the_image_weight():
    """Catches targets left unmixed, mixed with another weight or pairing than the images (1 - lam, a
    second Beta draw, another permutation), and mixup leaking into validation. The loss of a constructed
    batch must be the BCE of the model on lam x images + (1 - lam) x images[perm] against the targets
    mixed with the same lam and perm; validation scores the images as they are."""
    batch, alpha, seed, batch_idx = _batch(), 0.4, 3, 5
    lit = LitPawpularity(_net(), 3e-4, 1e-2, 0, mixup=alpha, seed=seed)
    lit.model.eval()  # BatchNorm on running statistics: the same output for the same input, call after call
    with torch.no_grad():  # logits spread over a few units, so the loss depends clearly on each row's target
        lit.model.head.weight.mul_(3 / float(lit.model(batch["image"]).std()))
    lam, perm = mixup_draw(alpha, seed, 0, batch_idx, len(batch["target"]))
    assert 0.05 < lam < 0.95 and (perm != np.arange(len(perm))).any(), "a draw that mixes, or the test shows nothing"

    with torch.no_grad():
        loss = lit.training_step(batch, batch_idx)
        x = batch["image"].float()
        mixed = lam * x + (1 - lam) * x[perm]
        t = batch["target"] / 100

        def bce(target: torch.Tensor) -> float:
            return float(torch.nn.functional.binary_cross_entropy_with_logits(lit.model(mixed), target))

        expected = bce(lam * t + (1 - lam) * t[perm])
        assert float(loss) == pytest.approx(expected, abs=1e-6)
        for wrong in (t, (1 - lam) * t + lam * t[perm], lam * t + (1 - lam) * t[np.roll(perm, 1)]):
            assert abs(bce(wrong) - expected) > 1e-4, "the constructed batch tells the right mix from wrong ones"
        # The same (seed, epoch, batch) gives the same draw (a resumed fold mixes as an uninterrupted one).
        assert mixup_draw(alpha, seed, 0, batch_idx, 6)[0] == lam and mixup_draw(alpha, seed, 0, batch_idx + 1, 6)[0] != lam

        lit.validation_step(batch, 0)
        plain = logits_to_score(lit.model(batch["image"]))
        assert float(lit.val_rmse.compute()) == pytest.approx(float(((plain - batch["target"]) ** 2).mean().sqrt()),
                                                              rel=1e-6)


# ---------------------------------------------------------------- head LR and layer-wise decay
class LrLog(pl.Callback):
    def __init__(self):
        self.steps: list[list[float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append([g["lr"] for g in trainer.optimizers[0].param_groups])


def _fit_and_log(lit: LitPawpularity, epochs: int = 2) -> tuple[np.ndarray, pl.Trainer]:
    rng = np.random.default_rng(0)
    pixels, targets = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), rng.uniform(1, 100, 16).astype(np.float32)
    loader, _ = fold_loaders(TrainConfig(batch_size=4, num_workers=0), pixels, np.arange(12), np.arange(12, 16),
                             targets, None, seed=0)
    log = LrLog()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[log])
    trainer.fit(lit, loader)
    return np.array(log.steps), trainer


def test_head_lr_is_m_times_the_body_s_and_every_group_follows_the_schedule():
    """Catches a head group without its multiplier, timm's lr_scale left unapplied (torch's schedulers
    ignore it: every layer would get --lr), a schedule that moves only one group, and layer groups that
    are not timm's. At step 0 the head's LR is M x the top body layer's, each body group is D^depth of
    it, and all groups keep those ratios along one warm-up + cosine that ends at 0."""
    lr, m, d = 1e-3, 10.0, 0.7
    lit = LitPawpularity(_net(), lr, 1e-2, warmup_epochs=1, head_lr_mult=m, layer_decay=d)
    lrs, trainer = _fit_and_log(lit)
    scales = [g["lr_scale"] for g in param_groups_layer_decay(_net().backbone, weight_decay=1e-2, layer_decay=d)]
    assert lrs.shape == (6, len(scales) + 1) and min(scales) < d ** 3, "timm's layer groups, several depths deep"

    body_top = lr * max(scales)
    factor = lrs[:, -2] / body_top  # the schedule, read off the top body group (the last of timm's groups)
    assert lrs[0, -1] == pytest.approx(m * lrs[0, -2], rel=1e-9), "head = M x body at step 0"
    np.testing.assert_allclose(lrs[:, -1], m * lrs[:, -2], rtol=1e-9)  # and at every step
    np.testing.assert_allclose(lrs[:, :-1], factor[:, None] * lr * np.array(scales)[None, :], rtol=1e-9)
    assert factor[0] < factor.max() == pytest.approx(1.0) and factor[-1] < factor.max(), "warm-up, then decay"
    assert all(g["lr"] == pytest.approx(0.0, abs=1e-12) for g in trainer.optimizers[0].param_groups), \
        "the cosine ends at 0 in every group"


def test_without_the_options_the_optimizer_is_the_single_group_of_older_runs():
    """Catches the defaults changing training (an older run's settings must still mean what they did, and
    its last.ckpt, with one parameter group, must still resume)."""
    lrs, trainer = _fit_and_log(LitPawpularity(_net(), 1e-3, 1e-2, warmup_epochs=0), epochs=1)
    groups = trainer.optimizers[0].param_groups
    assert len(groups) == 1 and groups[0]["weight_decay"] == 1e-2 and lrs[0, 0] == pytest.approx(1e-3)


# ---------------------------------------------------------------- accumulation
def test_accumulation_n_gives_the_optimizer_steps_of_batch_size_times_n(tiny_data, tmp_path):
    """Catches an LR schedule that counts batches instead of optimizer steps under accumulation (its
    cosine would stop partway, never reaching 0) and --accumulate not reaching the trainer (as many
    steps as batches)."""
    base = dict(data_dir=str(tiny_data), **{**TINY, "epochs": 2}, folds="0")
    summaries = {}
    for name, settings in {"accumulated": dict(batch_size=4, accumulate=2), "big batch": dict(batch_size=8)}.items():
        train_backbone(TrainConfig(artifacts_dir=str(tmp_path / name), **{**base, **settings}))
        summaries[name] = json.loads((tmp_path / name / "default/stage1/fold0/done.json").read_text())["lr_schedule"]
    acc, big = summaries["accumulated"], summaries["big batch"]
    assert acc["steps_run"] == acc["total_steps"] == big["steps_run"] == big["total_steps"] == 4
    assert acc["final_lr"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- EMA
def _oof_replays(art, data, k: int = 0) -> None:
    run = run_dir(art, "default")
    manifest = Stage1Manifest.load(run)
    train = read_split(data, "train")
    oof = pd.read_csv(Stage1Manifest.oof_file(run), dtype={"Id": str}).query("fold == @k")
    rows = np.array([train.ids.index(i) for i in oof["Id"]])
    pixels = train.pixels(manifest.img_size, run.image_cache, manifest.resize)
    _, scores = embed_and_score(manifest.fold_model(k), pixels, rows, device="cpu")
    np.testing.assert_allclose(scores.numpy(), oof["pred"].to_numpy(), atol=1e-4)


def test_ema_weights_differ_from_the_raw_ones_and_are_saved_and_reloaded(tiny_data, tmp_path, monkeypatch):
    """Catches a fold that saves (or scores its OOF with) the raw weights instead of the average. At the
    end of training the spy sees both; the saved file must be the average, which must differ from the
    raw weights, and the reloaded fold must reproduce the OOF."""
    seen = {}
    ended = EMAWeightAveraging.on_train_end

    def spy(self, trainer, pl_module):
        seen["raw"] = {k: v.clone() for k, v in pl_module.model.state_dict().items()}
        ended(self, trainer, pl_module)
        seen["average"] = {k: v.clone() for k, v in pl_module.model.state_dict().items()}

    monkeypatch.setattr(EMAWeightAveraging, "on_train_end", spy)
    train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(tmp_path), **{**TINY, "epochs": 2},
                               folds="0", ema=0.5, checkpoint="last"))
    saved = load_file(str(tmp_path / "default/stage1/fold0/model.safetensors"))
    assert set(saved) == set(seen["average"])
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, seen["average"][name], rtol=0, atol=0)
    moved = max(float((seen["raw"][k].float() - saved[k].float()).abs().max()) for k in saved)
    assert moved > 1e-4, "the average must differ from the raw weights"
    _oof_replays(tmp_path, tiny_data)


def test_ema_best_epoch_is_the_validated_average_and_resume_restores_it(tiny_data, tmp_path, monkeypatch):
    """Catches a best checkpoint that holds the raw weights while the epoch was chosen on the average's
    val RMSE (the OOF RMSE of the saved weights would not be the recorded val RMSE), and a resume that
    loses the average (restarting it from the checkpoint's weights): a fold interrupted after epoch 0 and
    resumed must end exactly where an uninterrupted one does."""
    cfg = dict(data_dir=str(tiny_data), **{**TINY, "epochs": 2, "batch_size": 4, "patience": 5}, folds="0", ema=0.6)
    train_backbone(TrainConfig(artifacts_dir=str(tmp_path / "ref"), **cfg))
    done = json.loads((tmp_path / "ref/default/stage1/fold0/done.json").read_text())
    assert done["oof_rmse"] == pytest.approx(done["val_rmse"], rel=1e-4)
    _oof_replays(tmp_path / "ref", tiny_data)

    started = EpochSummary.on_train_epoch_start

    def crash_at_epoch_1(self, trainer, pl_module):
        started(self, trainer, pl_module)
        if trainer.current_epoch == 1:
            raise RuntimeError("interrupted for the test")

    monkeypatch.setattr(EpochSummary, "on_train_epoch_start", crash_at_epoch_1)
    with pytest.raises(RuntimeError, match="interrupted for the test"):
        train_backbone(TrainConfig(artifacts_dir=str(tmp_path / "resumed"), **cfg))
    assert (tmp_path / "resumed/default/stage1/fold0/checkpoints/last.ckpt").is_file()
    monkeypatch.setattr(EpochSummary, "on_train_epoch_start", started)
    train_backbone(TrainConfig(artifacts_dir=str(tmp_path / "resumed"), **cfg))
    a = load_file(str(tmp_path / "ref/default/stage1/fold0/model.safetensors"))
    b = load_file(str(tmp_path / "resumed/default/stage1/fold0/model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6)


# ---------------------------------------------------------------- the options themselves
@pytest.mark.parametrize("option, value, words", [
    ("mixup", -0.1, "--mixup -0.1 is not valid; must be >= 0"),
    ("head_lr_mult", 0, "--head-lr-mult 0 is not valid; must be > 0"),
    ("layer_decay", 1.5, "--layer-decay 1.5 is not valid; must lie in (0, 1]"),
    ("ema", 1.0, "--ema 1.0 is not valid; must be 0 (off) or a decay in (0, 1)"),
    ("accumulate", 0, "--accumulate 0 is not valid; must be >= 1"),
    ("tta", "flip,flop", "unknown view(s) ['flop']"),
    ("resize", "stretch", "choose one of ['squash', 'pad', 'crop']"),
])
def test_bad_ingredient_values_name_the_value_and_the_fix(option, value, words):
    """Catches an option declared without its check: a bad value must stop at the config, not mid-training."""
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{option: value})
    assert words in str(e.value)


def test_older_fold_settings_mean_today_s_defaults():
    """Catches a new option whose default changes what an older fold was: its done.json lacks the key, and
    must still count as finished with today's default settings (and replay as it was trained)."""
    old = {k: v for k, v in model_settings(TrainConfig()).items()
           if k not in ("mixup", "head_lr_mult", "layer_decay", "ema", "accumulate", "tta", "resize")}
    assert model_settings(old) == model_settings(TrainConfig())
    assert {"mixup", "head_lr_mult", "layer_decay", "ema", "accumulate", "tta", "resize"} <= set(MODEL_KEYS)
    assert TrainConfig(tta="zoom,flip").tta == "flip,zoom" and TrainConfig(tta="none").tta == ""
