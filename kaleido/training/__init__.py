"""Stage 3, pre-training: the dataset and objective (built from a recipe), the trainer, checkpoints."""
