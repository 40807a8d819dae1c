"""Stage 2: a head per fold (scaler + SVR in one scikit-learn Pipeline) on a feature bank: each fold's fine-tuned
embedding and frozen pretrained models' features, chosen on OOF (cuML on GPU, scikit-learn(-intelex) on CPU)."""
