"""Kaleido-BERT in PyTorch: fashion vision-language pre-training as registered components."""

__version__ = "0.1.0"
