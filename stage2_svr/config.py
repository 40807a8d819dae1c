"""Stage-2 settings, saved resolved beside each fold's SVR."""
from __future__ import annotations

import math
from dataclasses import dataclass

from pawcore.config import DataOptions, DeviceOptions, LoaderOptions, RunSettings, in_range, option, override

BACKENDS = ("auto", "cuml", "sklearnex", "sklearn")  # stage2_svr/backends.py makes each


def frozen_size_value(value: str) -> str | None:
    """stage1, native, or a number of pixels (>= 1)."""
    if value in ("stage1", "native") or (value.isdigit() and int(value) >= 1):
        return None
    return "use stage1, native or a number of pixels"


def heads_value(value: str) -> str | None:
    """--heads: a comma-separated list of svr and gbdt, svr first (the SVR's choice drives stage 2)."""
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    if not kinds or kinds[0] != "svr" or any(k not in ("svr", "gbdt") for k in kinds) or len(set(kinds)) < len(kinds):
        return "give svr or svr,gbdt (svr is always fitted: its choice of sources drives stage 2)"
    return None


def auto_or_positive(value: str) -> str | None:
    """--C: 'auto' or a number > 0."""
    if value == "auto":
        return None
    try:
        number = float(value)
    except ValueError:
        return "must be auto or a number > 0"
    return None if math.isfinite(number) and number > 0 else "must be auto or a number > 0"


@dataclass
class SVRConfig(LoaderOptions, DeviceOptions, RunSettings):
    data_dir: str = override(DataOptions, "data_dir", help="Competition layout; default: the data dir stage 1 was "
                             "trained on.")
    svr_backend: str = option("auto", "auto = cuML if it imports and a CUDA GPU is present, else "
                              "scikit-learn-intelex if installed, else scikit-learn.", choices=BACKENDS)
    kernel: str = option("rbf", "SVR kernel.", choices=("rbf", "linear", "poly", "sigmoid"))
    C: str = option("auto", "SVR regularisation C, or auto: C (10..3000) and the kernel width gamma (1/32..1 x "
                    "--gamma) chosen on OOF from a grid, together with the sources, scaler and balance. A number "
                    "fixes C, and gamma is --gamma.", check=auto_or_positive)
    epsilon: float = option(0.1, "SVR epsilon-tube width, in Pawpularity points (not searched: "
                            "stage2_svr/search.py says why).", check=in_range(0))
    gamma: str = option("scale", "Kernel coefficient: 'scale' (1 / (n_features x variance of the SVR's input)), "
                        "'auto' (1 / n_features) or a number; with --C auto the grid's widths are multiples of it.")
    balance: str = option("auto", "Scale each source's block to unit total variance (fitted on each fold's train "
                          "rows) so every source weighs the same in the RBF distance: on, off, or auto = keep "
                          "what measures better on OOF.", choices=("auto", "on", "off"))
    recalibrate: str = option("auto", "Stretch the SVR head's scores with a linear map y ~ a + b x score fitted "
                              "on the OOF rows of the other folds (they are compressed toward the mean): on, off, "
                              "or auto = on when it lowers the cross-fitted OOF RMSE.", choices=("auto", "on", "off"))
    nested: str = option("auto", "Nested CV estimate of the whole choice (sources, scaler, balance, C, gamma), "
                         "reported beside the optimistic OOF RMSE: on, off, or auto = on when training rows x "
                         "candidate sources <= 2000 and there are >= 3 folds.", choices=("auto", "on", "off"))
    features: str = option("auto", "The SVR's feature sources, comma-separated: 'tuned' (each fold's fine-tuned "
                           "backbone), a timm model name (frozen, packaged ImageNet weights: tf_efficientnet_lite0/1/2), "
                           "MODEL=PATH (weights from a local file), MODEL:logits (its ImageNet logits), MODEL@SIZE "
                           "(run at SIZE px), clip:ViT-B-32=PATH (a CLIP image embedding; OpenAI's .pt or an open_clip "
                           "checkpoint), clip:ViT-B-32:prompts=PATH (its cosine similarities to --clip-prompts). "
                           "auto = tuned + every installed packaged model.")
    clip_prompts: str = option("", "Text file of prompts, one a line, for clip:NAME:prompts sources (one feature "
                               "column each); default: Cute, Funny, Derp, Small, Happy, Sad, Aggressive, Friendly, "
                               "Old, Young, Love. Recorded in the stage-2 manifest, so infer and score use the same.")
    heads: str = option("svr", "Stage-2 heads fitted per fold: svr, or svr,gbdt to add gradient-boosted trees "
                        "(XGBoost, early-stopped on an inner split of each fold's training rows), saved, replayed "
                        "and blended like the SVR.", check=heads_value)
    gbdt_features: str = option("all", "The GBDT head's sources: all = every --features source (trees pick their "
                                "own columns; nothing is chosen on OOF, so its OOF RMSE stays honest), or svr = the "
                                "SVR's chosen sources.", choices=("all", "svr"))
    frozen_size: str = option("stage1", "Input size of frozen models named without @SIZE: stage1 (stage 1's "
                              "--img-size, so every source sees the photo at the same size), native (each model's "
                              "own pretrained_cfg size) or a number of pixels.", check=frozen_size_value)
    select: str = option("auto", "auto = greedy forward selection of the sources and the scaler on OOF RMSE; "
                         "sources = select the sources, scaler as --standardize says; none = all given sources.",
                         choices=("auto", "sources", "none"))
    standardize: bool = option(False, "Standardise features with a scaler fitted on each fold's train rows "
                               "(used with --select sources/none; --select auto tries both). Off by default: the "
                               "SVR then sees each feature on the scale the backbone produced.")
    use_meta: bool = option(False, "Append the 12 metadata flags to the embeddings.")
    allow_partial: bool = option(False, "Go on when stage 1 has folds missing (recorded in the manifest); by "
                                 "default that is an error naming the missing folds.")
