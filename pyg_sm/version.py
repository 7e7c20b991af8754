r"""The library's version (imported by every layer that records it)."""
__version__ = '0.5.0'
