"""What jaxpool.linen and jaxpool.nnx share: parameter shapes and checks (modules),
the option lists of their docstrings (module_docs) and the NNX bases (nnx_base)."""
