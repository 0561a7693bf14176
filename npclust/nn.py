"""Dense network building blocks with hand-written forward and backward passes.

Every module follows one contract, modelled on ``torch.nn``:

* ``forward(x)`` (also ``module(x)``) returns the output and keeps exactly what
  ``backward`` needs, for the most recent call only;
* ``backward(dy, input_grad=True)`` returns dL/dx and *accumulates* (``+=``) the
  parameter gradients into each ``Parameter.grad``; with ``input_grad=False`` it
  skips dL/dx (the first layer of a network rarely needs it) and returns None;
* parameter names, array layouts and defaults are PyTorch's, so ``state_dict()``
  loads into the equivalent ``torch.nn`` module.

The derivative each backward pass implements is stated in its docstring and derived
in ``docs/derivations.md``.
"""

from collections import OrderedDict

import numpy as np

__all__ = [
    "Parameter",
    "Module",
    "Linear",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Sigmoid",
    "Tanh",
    "Softplus",
    "Identity",
    "Softmax",
    "LogSoftmax",
    "BatchNorm1d",
    "Dropout",
    "Sequential",
    "ACTIVATIONS",
]


class Parameter:
    """A trainable array and the gradient accumulated for it.

    Parameters
    ----------
    data : ndarray
        The values. Optimizers update it in place, so it may be a view into a
        larger buffer (see :meth:`Module.flatten_parameters`).

    Attributes
    ----------
    data : ndarray
    grad : ndarray of the same shape and dtype as ``data``, initially zero.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = np.asarray(data)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"
