"""Elementwise activations and the softmax layers, each backward beside its forward.

Each activation caches what its derivative needs — mostly its *output*, as in
scikit-learn's derivative table, because the output is needed downstream anyway.
"""

import numpy as np
from scipy.special import expit

from ..functional import log_softmax, log_softmax_backward, softmax, softmax_backward
from .module import Module

__all__ = ["ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Softplus", "Identity", "Softmax",
           "LogSoftmax", "ACTIVATIONS", "activation"]


class ReLU(Module):
    """``y = max(x, 0)``.

    Parameters
    ----------
    inplace : bool, default=False
        Overwrite the input with the output (saves one activation-sized array; the
        input must not be needed elsewhere, as with PyTorch's ``inplace=True``).
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace
        self._y = None

    def forward(self, x):
        """``y = max(x, 0)``; keeps ``y`` for backward."""
        if not (isinstance(x, np.ndarray) and x.ndim >= 1 and x.dtype.kind == "f"):
            self._y = np.maximum(x, 0, out=x if self.inplace else None)
            return self._y
        out = x if self.inplace else self.workspace.result("output", x.shape, x.dtype)
        self._y = np.maximum(x, self.workspace.zero_row(x), out=out)
        return self._y

    def backward(self, dy, input_grad=True):
        """dy/dx = 1 where y > 0, else 0 (PyTorch's choice of 0 at x = 0)."""
        if not input_grad:
            return None
        y = self._y
        positive = np.greater(y, 0, out=self.workspace.result("mask", y.shape, bool))
        dx = self.workspace.result("input_grad", y.shape, np.result_type(dy, positive))
        return np.multiply(dy, positive, out=dx)

    def extra_repr(self):
        """The arguments shown inside ``repr()``."""
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """``y = x`` for x > 0, ``negative_slope * x`` otherwise."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)
        self._positive = None

    def forward(self, x):
        """``y = x`` for x > 0, ``negative_slope * x`` otherwise; keeps the sign mask."""
        self._positive = x > 0
        return np.where(self._positive, x, self.negative_slope * x)

    def backward(self, dy, input_grad=True):
        """dy/dx = 1 for x > 0, ``negative_slope`` otherwise."""
        if not input_grad:
            return None
        return np.where(self._positive, dy, self.negative_slope * dy)

    def extra_repr(self):
        """The arguments shown inside ``repr()``."""
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    """``y = x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = float(alpha)
        self._x = self._y = None

    def forward(self, x):
        """``y = x`` for x > 0, ``alpha * expm1(x)`` otherwise; keeps ``x`` and ``y``."""
        self._x = x
        # expm1 of the clipped input: exact near 0 and no overflow for large positive x.
        self._y = np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))
        return self._y

    def backward(self, dy, input_grad=True):
        """dy/dx = 1 for x > 0, ``alpha * exp(x)`` (= y + alpha) otherwise."""
        if not input_grad:
            return None
        # alpha * exp(x) directly: y + alpha cancels catastrophically for very negative x.
        return dy * np.where(self._x > 0, 1, self.alpha * np.exp(np.minimum(self._x, 0)))

    def extra_repr(self):
        """The arguments shown inside ``repr()``."""
        return f"alpha={self.alpha}"


class Sigmoid(Module):
    """``y = 1 / (1 + exp(-x))``, evaluated without overflow for any x."""

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x):
        """``y = expit(x)``; keeps ``y`` for backward."""
        self._y = expit(x)
        return self._y

    def backward(self, dy, input_grad=True):
        """dy/dx = y (1 - y)."""
        return dy * self._y * (1 - self._y) if input_grad else None


class Tanh(Module):
    """``y = tanh(x)``."""

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x):
        """``y = tanh(x)``; keeps ``y`` for backward."""
        self._y = np.tanh(x)
        return self._y

    def backward(self, dy, input_grad=True):
        """dy/dx = 1 - y^2."""
        return dy * (1 - self._y * self._y) if input_grad else None


class Softplus(Module):
    """``y = log(1 + exp(beta x)) / beta``, and ``y = x`` where ``beta x > threshold``.

    Defaults and the linear region follow ``torch.nn.Softplus``.
    """

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = float(beta), float(threshold)
        self._x = self._y = None

    def forward(self, x):
        """``y = logaddexp(0, beta x) / beta``, ``x`` in the linear region; keeps ``x`` and ``y``."""
        self._x = x
        scaled = self.beta * x
        # logaddexp(0, t) = log(1 + e^t) without overflow for large t.
        self._y = np.where(scaled > self.threshold, x, np.logaddexp(0, scaled) / self.beta)
        return self._y

    def backward(self, dy, input_grad=True):
        """dy/dx = sigmoid(beta x) = 1 - exp(-beta y); exactly 1 in the linear region."""
        if not input_grad:
            return None
        # From e^{beta y} = 1 + e^{beta x}: sigmoid(beta x) = -expm1(-beta y), accurate
        # for tiny y (large negative x) where 1 - exp(...) would cancel.
        slope = np.where(self.beta * self._x > self.threshold, 1, -np.expm1(-self.beta * self._y))
        return dy * slope

    def extra_repr(self):
        """The arguments shown inside ``repr()``."""
        return f"beta={self.beta}, threshold={self.threshold}"


class Identity(Module):
    """``y = x``."""

    def forward(self, x):
        """``y = x``, the input itself."""
        return x

    def backward(self, dy, input_grad=True):
        """dy/dx = 1."""
        return dy if input_grad else None


class Softmax(Module):
    """``y = softmax(x)`` along ``dim`` (max-shifted, see :func:`npclust.functional.softmax`)."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim
        self._y = None

    def forward(self, x):
        """``y = softmax(x)`` along ``dim``; keeps ``y`` for backward."""
        self._y = softmax(x, axis=self.dim)
        return self._y

    def backward(self, dy, input_grad=True):
        """dx = y * (dy - sum(dy * y, dim))."""
        return softmax_backward(dy, self._y, axis=self.dim) if input_grad else None

    def extra_repr(self):
        """The arguments shown inside ``repr()``."""
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """``y = log_softmax(x)`` along ``dim``, computed in log space."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim
        self._y = None

    def forward(self, x):
        """``y = log_softmax(x)`` along ``dim``; keeps ``y`` for backward."""
        self._y = log_softmax(x, axis=self.dim)
        return self._y

    def backward(self, dy, input_grad=True):
        """dx = dy - exp(y) * sum(dy, dim)."""
        return log_softmax_backward(dy, self._y, axis=self.dim) if input_grad else None

    def extra_repr(self):
        """The arguments shown inside ``repr()``."""
        return f"dim={self.dim}"


ACTIVATIONS = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softplus": Softplus,
    "identity": Identity,
}


def activation(name):
    """Build an activation module from its name in :data:`ACTIVATIONS`.

    Parameters
    ----------
    name : str
        One of the keys of :data:`ACTIVATIONS`, e.g. ``"relu"``.
    """
    try:
        return ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; valid names are {sorted(ACTIVATIONS)}"
        ) from None
