"""Examples of jaxpool in use; `examples.median_pool_plugin` is a plugin of the experiments."""
