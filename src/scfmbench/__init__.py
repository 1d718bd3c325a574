"""scfmbench: a reproducible benchmarking harness for single-cell RNA-seq foundation models."""

__version__ = "0.1.0"


class InputError(ValueError):
    """Bad user input (a config value, a data file, a column): the message says what and how to fix it."""
