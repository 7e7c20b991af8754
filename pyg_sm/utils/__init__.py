r"""Helpers shared by every part of the library (the lowest layer: it
imports nothing else of :mod:`pyg_sm`)."""
