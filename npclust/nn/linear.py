"""The affine layer ``y = x W^T + b``."""

import numpy as np

from ..validation import check_random_state
from .module import Module, check_input
from .parameter import Parameter

__all__ = ["Linear"]


class Linear(Module):
    """Affine map ``y = x @ weight.T + bias``, with PyTorch's layout and initialisation.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default=True
    rng : None, int or numpy.random.Generator
        Seeds the initialisation: weight and bias are drawn from
        U(-1/sqrt(in_features), 1/sqrt(in_features)), PyTorch's default.
    dtype : numpy dtype, default=np.float32

    Attributes
    ----------
    weight : Parameter of shape (out_features, in_features)
    bias : Parameter of shape (out_features,) or None
    """

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = np.dtype(dtype)
        rng = check_random_state(rng)
        bound = 1.0 / np.sqrt(self.in_features)
        self.weight = Parameter(
            rng.uniform(-bound, bound, (self.out_features, self.in_features)).astype(self.dtype)
        )
        self.bias = (
            Parameter(rng.uniform(-bound, bound, self.out_features).astype(self.dtype))
            if bias
            else None
        )
        self._x = None

    def forward(self, x):
        """``y = x @ weight.T + bias``; keeps ``x`` for backward.

        Parameters
        ----------
        x : ndarray of shape (n_samples, in_features)
        """
        check_input(self, x, self.in_features)
        self._x = x
        # weight.T is a transposed view: matmul hands BLAS a transpose flag, no copy.
        out = self.workspace.result("output", (len(x), self.out_features), self.dtype)
        y = np.matmul(x, self.weight.data.T, out=out)
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, dy, input_grad=True):
        """Gradients of ``y = x W^T + b``.

        dL/dW += dy^T x,  dL/db += sum over rows of dy,  dL/dx = dy W.
        """
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward")
        x, weight, bias = self._x, self.weight, self.bias
        if weight.requires_grad:
            weight.accumulate_grad(np.matmul, dy.T, x)
        if bias is not None and bias.requires_grad:
            bias.accumulate_grad(np.sum, dy, axis=0)
        if not input_grad:
            return None
        dx = self.workspace.result("input_grad", x.shape, np.result_type(dy, weight.data))
        return np.matmul(dy, weight.data, out=dx)

    def extra_repr(self):
        """The arguments shown inside ``repr()``."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
