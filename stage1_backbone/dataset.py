"""Rows of the decoded-image cache as uint8 tensors; albumentations augmentations for training only.

Normalisation is not done here but on the device, inside the model (model.Preprocess): uint8 batches
are 4x smaller to move, and mean/std come from the backbone's own timm config, so every stage
preprocesses identically.
"""
from __future__ import annotations

import os
from typing import Any

# albumentations asks the network for a newer version at import unless told not to: this pipeline is offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset, Sampler  # noqa: E402


def train_augmentations(seed: int) -> A.Compose:
    # Mild geometry: the target depends on how big the pet is in the frame, so no big zooms or crops.
    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.95, 1.05), translate_percent=(-0.05, 0.05), rotate=(-10, 10), p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
        A.HueSaturationValue(hue_shift_limit=5, sat_shift_limit=15, val_shift_limit=0, p=0.3),
    ], seed=seed)  # albumentations keeps its own RNG: seed it, or runs differ


class EpochSampler(Sampler):
    """Shuffles by (seed, epoch) alone and tells the dataset the epoch: yields (position, epoch) pairs.

    Lightning calls set_epoch before every epoch, also the first one after resuming from a
    checkpoint, so a resumed run sees the same order, augmentations and dropout as an uninterrupted
    one. When nobody calls set_epoch (e.g. wrapped by a DistributedSampler) the epoch advances by
    itself at each pass.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        torch.manual_seed(self.seed * 10_000 + epoch)  # dropout / drop-path in this epoch's steps
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return iter([(int(i), epoch) for i in order])


class CachedImages(Dataset):
    """Item -> {"image": uint8 CxHxW, "target": float, "meta": float vector (empty without metadata)}.

    An item is a position, or a (position, epoch) pair from EpochSampler for augmented training.
    """

    def __init__(self, pixels: np.ndarray, rows: np.ndarray, targets: np.ndarray | None = None,
                 meta: np.ndarray | None = None, augment: A.Compose | None = None, seed: int = 0):
        self.pixels, self.rows, self.augment = pixels, np.asarray(rows), augment
        self.targets = targets
        self.meta = meta
        self.seed = seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        i, epoch = item if isinstance(item, tuple) else (item, 0)
        row = int(self.rows[i])
        image = np.array(self.pixels[row])  # a writable copy out of the read-only memmap
        if self.augment is not None:
            # Augmentation depends on (seed, epoch, image) only, not on worker count or order: a resumed
            # run replays exactly what an uninterrupted one would have seen.
            self.augment.set_random_seed(int(np.random.SeedSequence([self.seed, epoch, row]).generate_state(1)[0]))
            image = self.augment(image=image)["image"]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
            "target": torch.tensor(float(self.targets[row]) if self.targets is not None else float("nan")),
            "meta": torch.from_numpy(self.meta[row]) if self.meta is not None else torch.zeros(0),
        }
