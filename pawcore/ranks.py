"""Which process of a distributed launch this is: only global rank 0 writes artifacts and logs INFO."""
from __future__ import annotations

import os

RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def is_global_zero() -> bool:
    """False in the extra processes that Lightning's DDP launcher (or torchrun/SLURM) starts."""
    return all(int(os.environ.get(var, 0) or 0) == 0 for var in RANK_VARS)
