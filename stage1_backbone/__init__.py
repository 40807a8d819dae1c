"""Stage 1: fine-tune one timm backbone per fold with a BCE-with-logits head on Pawpularity/100."""
