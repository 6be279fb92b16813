"""Runnable experiments on top of jaxpool (python -m experiments.<name> --config=...).

data.py (MNIST through tensorflow-datasets, offline preparation), models.py (CNNs with
a pooling slot from jaxpool.registry), train.py (one config -> one checkpointed run).
"""
