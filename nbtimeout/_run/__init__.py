"""The client side of limits a notebook carries: ``nbtimeout run``, the papermill engine, the kernelspec."""
