"""What the pools share: argument checks, window views and XLA-facing choices.

geometry (user arguments -> `lax.reduce_window` arguments), dtypes, keys, views
(strided window views and the fusion barrier), separable and axis_max (box-window
and one-axis maxima with PyTorch's gradient rule), window_dot (a filter applied to
every window), powers and global_norm (scaled powers and whole-axis p-norms for the
p-norm pools) and fallback (a fast formula with an exact fallback, per backend).
"""
