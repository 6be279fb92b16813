"""The pool families, one file each; what they share lives in `machinery/`."""
