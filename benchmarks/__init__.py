"""Benchmarks of the project's commands against naive baselines and the physical limit."""
