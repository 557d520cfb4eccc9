"""Training on Ray Train: datasets from Feast frames, walk-forward splits, models,
evaluation against honest baselines, and predictions."""
