"""neurodata: materialise neuromorphic benchmark datasets, exactly and fast."""

__version__ = "0.3.0"


def __getattr__(name: str):
    # Lazy, so that `neurodata --version` and the CLI do not pay for numpy before they need it.
    if name == "open_dataset":
        from .reader import open_dataset

        return open_dataset
    raise AttributeError(f"module 'neurodata_cli' has no attribute {name!r}")
