"""The pieces of `python -m experiments.benchmark` (experiments/benchmark.py, its command line).

cases.py (the input cases and each pool's arguments and baseline: a new row goes
there), harness.py (one case timed), torch_kernels.py and keras_process.py (the
counterparts outside JAX), training.py (the training table), report.py (the
Markdown), runner.py (the whole run and its files).
"""
