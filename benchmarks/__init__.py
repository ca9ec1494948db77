"""nbtimeout's benchmark suite: ``python benchmarks/run.py [--quick]``."""
