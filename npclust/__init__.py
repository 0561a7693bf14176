"""npclust: pure-NumPy deep clustering with hand-written, gradient-checked backward passes."""

__version__ = "0.1.0"
