"""Gradpath: finds PyTorch training code whose gradients never reach the optimizer."""

__version__ = "0.1.0"
