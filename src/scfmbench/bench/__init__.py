"""Stand-alone benchmarks: ``python -m scfmbench.bench.<name>`` prints timings and memory for one component."""
