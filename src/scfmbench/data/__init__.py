"""Datasets: loaders, the synthetic generator, splits and the prepared-dataset contract."""
