"""ml_collections configs: each file has get_config(arg) (see configs/mnist.py)."""
