"""Dense network building blocks with hand-written forward and backward passes.

Every module follows one contract, modelled on ``torch.nn``:

* ``forward(x)`` (also ``module(x)``) returns the output and keeps exactly what
  ``backward`` needs, for the most recent call only;
* ``backward(dy, input_grad=True)`` returns dL/dx and *accumulates* (``+=``) the
  parameter gradients into each ``Parameter.grad``; with ``input_grad=False`` it
  skips dL/dx (the first layer of a network rarely needs it) and returns None;
* parameter names, array layouts and defaults are PyTorch's, so ``state_dict()``
  loads into the equivalent ``torch.nn`` module.

Whatever ``forward``/``backward`` return belongs to the caller: a new array (or the
input itself, for in-place and identity modules), never overwritten by a later call
— except inside a container, which may lend its modules' results and so reuse their
storage from step to step (:mod:`npclust.nn.workspace`, the one place that does).

Submodules: ``parameter`` (Parameter, FlatBuffer), ``module`` (Module), ``linear``,
``activation``, ``normalization``, ``dropout``, ``container`` (Sequential),
``workspace``. The derivative each backward pass implements is stated in its
docstring and derived in ``docs/derivations.md``.
"""

from .activation import (
    ACTIVATIONS,
    ELU,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
    activation,
)
from .container import Sequential
from .dropout import Dropout
from .linear import Linear
from .module import Module
from .normalization import BatchNorm1d
from .parameter import FlatBuffer, Parameter, flatten_parameters

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
    "activation",
    "FlatBuffer",
    "flatten_parameters",
]
