"""The pieces of `python -m experiments.compare` (experiments/compare.py, its command line).

files.py (a study's folder: file names, JSON, cells read back), sweep.py (the cells
and running them), results.py (per-pool rows, paired differences, budget),
markdown.py (the text of results.md), report.py (results.csv, cells.csv,
results.md and the plots written).
"""
