"""edgekit: compress, export, ship and run PyTorch models on edge devices."""

__version__ = "0.1.0"
