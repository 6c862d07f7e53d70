"""Training: the trainer, checkpoints and their averaging, WiSE-FT interpolation, objectives, the ablation table."""
