"""The pool families, one file each; what they share lives in `machinery/`, what the
Flax modules share in `layers/`."""
