"""Inverted dropout."""

from ..validation import check_random_state
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Zero each element with probability ``p`` in training mode, scaling the rest by 1/(1-p).

    Identity in evaluation mode (inverted dropout, as in PyTorch).

    Parameters
    ----------
    p : float in [0, 1], default=0.5
    rng : None, int or numpy.random.Generator
        Source of the dropout masks.
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = check_random_state(rng)
        self._mask = None

    def forward(self, x):
        """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (training mode)."""
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape) >= self.p
        # p = 1 drops everything; PyTorch returns zeros rather than dividing by 0.
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        self._mask = keep.astype(x.dtype) * x.dtype.type(scale)
        return x * self._mask

    def backward(self, dy, input_grad=True):
        """dy/dx = mask / (1 - p), the same scaled mask the forward pass applied."""
        if not input_grad:
            return None
        return dy if self._mask is None else dy * self._mask

    def extra_repr(self):
        """The arguments shown inside ``repr()``."""
        return f"p={self.p}"
