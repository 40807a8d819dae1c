"""Stage-1 settings. Saved resolved beside each fold, so later stages rebuild the model from it."""
from __future__ import annotations

from dataclasses import dataclass

from pawcore.config import DataOptions, RunSettings, in_range, option, override
from pawcore.views import RESIZE_MODES, TTA, parse_tta, tta_value

LOGGERS = ("csv", "tensorboard", "wandb", "mlflow")


def ema_decay(value: float) -> str | None:
    """--ema: 0 (off) or a decay in (0, 1); 1 would never move the average off the first step's weights."""
    return None if value == 0 or 0 < value < 1 else "must be 0 (off) or a decay in (0, 1), e.g. 0.9"


@dataclass
class TrainConfig(RunSettings):
    data_dir: str = override(DataOptions, "data_dir", required=True,
                             help="Competition layout: train.csv, train/<Id>.jpg (test.* used by infer).")
    backbone: str = option("tf_efficientnet_lite0", "Any timm model name.", group="model")
    pretrained: str = option("auto", "Where ImageNet weights come from: auto = installed package for "
                             "tf_efficientnet_lite0/1/2 (else error), none = random init, hub = allow a download.",
                             choices=("auto", "none", "hub"), group="model")
    pretrained_file: str = option("", "Local timm/PyTorch checkpoint (.pth/.bin/.safetensors) to start from.", group="model")
    mean: str = option("", "Normalisation mean, 3 comma-separated values on 0..1 (RGB), for --pretrained-file weights "
                       "trained with another recipe; default: the pretrained_cfg in a config.json beside the weights "
                       "file, else timm's for --backbone. Saved with each fold and used by every later stage.",
                       group="model")
    std: str = option("", "Normalisation std, 3 comma-separated values on 0..1 (RGB); default as for --mean.",
                      group="model")
    img_size: int = option(224, "Square input size in pixels (passed to models built for one size: ViT, Swin...).",
                           check=in_range(1), group="model")
    n_folds: int = option(5, "Number of cross-validation folds (folds.csv is made once per run).", check=in_range(2),
                          group="data")
    folds_from: str = option("", "Copy folds.csv from this run (same --artifacts-dir), so the two runs can be "
                             "ensembled by `infer --runs`; then --seed varies only training.", group="data")
    folds: str = option("", "Train only these folds, e.g. '0,2' (default: all).", group="data")
    seed: int = option(42, "Seed for folds, init, augmentation and data order.", group="training")
    epochs: int = option(5, "Maximum epochs per fold.", check=in_range(1), group="training")
    # Not DeviceOptions.batch_size: here it is a training setting that changes what a fold learns.
    batch_size: int = option(32, "Training batch size.", check=in_range(1), group="training")
    lr: float = option(3e-4, "Peak AdamW learning rate (after warm-up).", check=in_range(0, low_open=True),
                       group="training")
    weight_decay: float = option(1e-2, "AdamW weight decay.", group="training")
    warmup_epochs: float = option(0.5, "Linear warm-up length in epochs, then cosine decay to 0.", group="training")
    patience: int = option(3, "Early stopping: epochs without a better val RMSE before a fold stops "
                           "(--checkpoint best only).", group="training")
    checkpoint: str = option("best", "Which weights a fold keeps: best = the epoch with the lowest val RMSE, with "
                             "early stopping (the competition's practice; its OOF RMSE is optimistic, as the "
                             "epoch is chosen on the fold it scores); last = the last epoch, no early stopping "
                             "(an honest OOF estimate).", choices=("best", "last"), group="training")
    use_meta: bool = option(False, "Feed the 12 metadata flags of train.csv to the head.", group="model")
    num_workers: int = option(-1, "DataLoader worker processes; -1 = auto: 0 when training on the CPU (workers "
                              "would take cores from the model), min(16, cores) on a GPU (augmentations run on "
                              "the CPU and must keep the GPU fed).", check=in_range(-1), group="hardware")
    accelerator: str = option("auto", "Lightning accelerator: auto, cpu, gpu, ...", group="hardware")
    devices: str = option("auto", "Lightning devices: auto, 1, 2, '0,1', ...", group="hardware")
    precision: str = option("auto", "auto = bf16-mixed on GPUs with bf16, 16-mixed on other GPUs, 32-true on CPU.", group="hardware")
    strategy: str = option("auto", "Lightning strategy, e.g. ddp for data-parallel training on several devices.", group="hardware")
    num_nodes: int = option(1, "Machines for DDP (each runs the same command; see README).", check=in_range(1),
                            group="hardware")
    logger: str = option("csv", "Experiment logger besides the CSV log every fold always writes: csv (only that), "
                         "tensorboard, wandb or mlflow (their package must be installed).", choices=LOGGERS,
                         group="training")
    compile: bool = option(False, "torch.compile the backbone (GPU; slower start, faster steps).", group="hardware")
    # The 2021 winners' training ingredients. Each default is the behaviour before the option existed, so a
    # fold saved without these keys replays as it was trained. README, "Training ingredients", says which
    # ones helped on the held-out benchmark.
    mixup: float = option(0.0, "Mixup: each training batch's images, metadata and BCE targets mixed with one "
                          "Beta(ALPHA, ALPHA) weight (0 = off; e.g. 0.4). Validation and OOF see the photos as "
                          "they are.", check=in_range(0), group="training", metavar="ALPHA")
    head_lr_mult: float = option(1.0, "The head's learning rate as a multiple of the backbone's (e.g. 10: the new "
                                 "linear head learns faster than the pretrained body).",
                                 check=in_range(0, low_open=True), group="training", metavar="M")
    layer_decay: float = option(1.0, "Layer-wise LR decay (timm's param_groups_layer_decay): each block's LR is "
                                "D times the next one's, the last block at --lr; 1 = off (one LR for the body). "
                                "With D < 1 biases and norm weights get no weight decay, as in timm.",
                                check=in_range(0, 1, low_open=True), group="training", metavar="D")
    ema: float = option(0.0, "Exponential moving average of the weights, updated every optimizer step with this "
                        "decay (0 = off; ~1 - 1/steps-to-average, e.g. 0.9 for a few dozen steps, 0.999 for "
                        "thousands). The average is validated, chosen by --checkpoint, scored for OOF and saved.",
                        check=ema_decay, group="training", metavar="DECAY")
    accumulate: int = option(1, "Gradient accumulation: one optimizer step every N batches (an effective batch "
                             "of --batch-size x N); the LR schedule counts optimizer steps.", check=in_range(1),
                             group="training", metavar="N")
    tta: str = option("", "Test-time views every head of this run averages over, besides the photo itself: "
                      f"none, or comma-separated from {', '.join(TTA)} (zoom: the central 7/8; crops: the 4 corners of 7/8). "
                      "Used for the OOF of both heads (fit-svr) and by infer/score/serve (their --tta run).",
                      check=tta_value, group="model", metavar="VIEWS")
    resize: str = option("squash", "How a photo becomes a square: squash (stretch the whole photo), pad (keep "
                         "the aspect ratio, black borders) or crop (the central square). Used by every later "
                         "stage from the saved config, frozen feature sources included.",
                         choices=RESIZE_MODES, group="model")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.tta = ",".join(parse_tta(self.tta))  # one spelling per set of views: "zoom,flip" is "flip,zoom"


# Settings that change what a fold learns: a finished fold is re-used only if these match. The rest
# (where to run, how many workers, which folds this job takes) may differ between jobs of one run.
MODEL_KEYS = ("backbone", "pretrained", "pretrained_file", "mean", "std", "img_size", "n_folds", "seed", "epochs", "batch_size",
              "lr", "weight_decay", "warmup_epochs", "patience", "use_meta", "checkpoint", "mixup", "head_lr_mult",
              "layer_decay", "ema", "accumulate", "tta", "resize")
