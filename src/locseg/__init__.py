"""locseg: unsupervised object segmentation with an explicit localization module."""

__version__ = "0.1.0"
