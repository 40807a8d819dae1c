"""Stage 2: an SVR head per fold on the fold backbone's frozen embeddings (cuML on GPU, sklearn(-intelex) on CPU)."""
