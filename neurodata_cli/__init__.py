"""neurodata: materialise neuromorphic benchmark datasets, exactly and fast."""

__version__ = "0.1.0"
