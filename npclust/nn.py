"""Dense network building blocks with hand-written forward and backward passes.

Every module follows one contract, modelled on ``torch.nn``:

* ``forward(x)`` (also ``module(x)``) returns the output and keeps exactly what
  ``backward`` needs, for the most recent call only;
* ``backward(dy, input_grad=True)`` returns dL/dx and *accumulates* (``+=``) the
  parameter gradients into each ``Parameter.grad``; with ``input_grad=False`` it
  skips dL/dx (the first layer of a network rarely needs it) and returns None;
* parameter names, array layouts and defaults are PyTorch's, so ``state_dict()``
  loads into the equivalent ``torch.nn`` module.

Buffers. Whatever ``forward``/``backward`` return belongs to the caller: a new array
(or the input itself, for in-place and identity modules), never overwritten by a later
call. Inside a container the rule is relaxed: in training mode :class:`Sequential`
calls ``_forward_scratch``/``_backward_scratch`` on every module whose result it does
not hand back to its own caller, and those may return a buffer the module reuses on
its next such call. So a fixed-shape training step allocates no batch-sized arrays
for intermediate activations and gradients, while outputs and input gradients that
reach user code are never aliased. Private caches (BatchNorm's normalised input,
ReLU's mask) are reused in training mode, since only the latest call's cache is kept.

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
    requires_grad : bool
        When False, backward passes leave ``grad`` alone and skip the work of
        computing it (set through :meth:`Module.requires_grad_`).

    Notes
    -----
    :meth:`zero_grad` does not write zeros at once: it marks the gradient as zero,
    and the array is filled with zeros the first time ``grad`` is read. A backward
    pass that computes the whole gradient in one product (``Linear``) writes it
    straight into the array instead of adding to zeros, saving the fill and one pass
    over the weights per step, as PyTorch does with ``zero_grad(set_to_none=True)``.
    Through the attribute ``grad`` a pending zero is never visible; only an
    alias kept from before ``zero_grad`` (``g = p.grad``) still holds the old values
    until the next backward or read, as a PyTorch tensor kept across
    ``zero_grad(set_to_none=True)`` does.
    """

    __slots__ = ("data", "_grad", "_grad_is_zero", "requires_grad")

    def __init__(self, data):
        self.data = np.asarray(data)
        self.grad = np.zeros_like(self.data)
        self.requires_grad = True

    @property
    def grad(self):
        if self._grad_is_zero:
            self._grad.fill(0)
            self._grad_is_zero = False
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = value
        self._grad_is_zero = False

    def zero_grad(self):
        """Make the gradient zero (lazily: see the class Notes)."""
        self._grad_is_zero = True

    def _overwrite_grad(self, compute):
        """Add ``compute(out=...)`` to the gradient, or write it there if it is zero.

        ``compute`` takes an ``out`` array (or None for a fresh result) and returns
        the result, like a ufunc or ``np.matmul``.
        """
        if self._grad_is_zero:
            compute(out=self._grad)
            self._grad_is_zero = False
        else:
            self._grad += compute(out=None)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class: parameter bookkeeping, train/eval, state dicts, dtype moves.

    Subclasses implement ``forward`` and ``backward``. Parameters, buffers and child
    modules are plain attributes; they are discovered in the order they were assigned,
    which is also PyTorch's registration order, so state-dict keys line up.
    Buffer attribute names are listed in the class attribute ``_buffer_names``.
    """

    _buffer_names = ()

    def __init__(self):
        self.training = True

    # ----------------------------------------------------------------- running
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy, input_grad=True):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x):
        return self.forward(x)

    # ------------------------------------------------------- container protocol
    # A container calls these instead of forward/backward when it does not return the
    # result to its own caller and keeps it only until this module's next call of the
    # same method. A module may then write the result into a buffer it reuses (see the
    # module docstring). The defaults allocate, exactly like forward/backward.
    def _forward_scratch(self, x):
        return self.forward(x)

    def _backward_scratch(self, dy, input_grad=True):
        return self.backward(dy, input_grad=input_grad)

    def _workspace_array(self, name, shape, dtype):
        """Private array ``name`` of ``shape`` and ``dtype``, reused while they stay the same.

        Contents are undefined; callers overwrite them. Kept in ``self._workspace``,
        which is neither a parameter nor a buffer, so state dicts never see it.
        """
        workspace = self.__dict__.get("_workspace")
        if workspace is None:
            workspace = self.__dict__["_workspace"] = {}
        array = workspace.get(name)
        # A workspace restored read-only (an unpickled memory map) cannot be written into.
        if (array is None or array.shape != shape or array.dtype != dtype
                or not array.flags.writeable):
            array = workspace[name] = np.empty(shape, dtype)
        return array

    def __getstate__(self):
        """Pickle without the workspace and the arrays cached for ``backward``.

        The next forward pass recreates both; keeping them would store batch-sized
        activations next to the weights.
        """
        return {name: None if name.startswith("_") and isinstance(value, np.ndarray) else value
                for name, value in self.__dict__.items() if name != "_workspace"}

    # ---------------------------------------------------------- introspection
    def children(self):
        """Direct child modules, in assignment order."""
        return [value for value in vars(self).values() if isinstance(value, Module)]

    def named_children(self):
        return [(name, value) for name, value in vars(self).items() if isinstance(value, Module)]

    def named_parameters(self, prefix=""):
        """``(name, Parameter)`` pairs with PyTorch's dotted names, e.g. ``"0.weight"``."""
        named = []
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                named.append((prefix + name, value))
            elif isinstance(value, Module):
                named.extend(value.named_parameters(prefix + name + "."))
        return named

    def parameters(self):
        return [parameter for _, parameter in self.named_parameters()]

    def named_buffers(self, prefix=""):
        """``(name, ndarray)`` pairs of non-trainable state (e.g. running statistics)."""
        named = [(prefix + name, getattr(self, name)) for name in self._buffer_names]
        for name, child in self.named_children():
            named.extend(child.named_buffers(prefix + name + "."))
        return named

    def zero_grad(self):
        """Set every parameter gradient to zero (in place, so views stay views).

        The zeros are written lazily, see :class:`Parameter`.
        """
        for parameter in self.parameters():
            parameter.zero_grad()

    def requires_grad_(self, requires_grad=True):
        """Turn parameter-gradient accumulation on or off for every parameter (returns self).

        With it off, ``backward`` still returns dL/dx but computes no parameter
        gradient, like differentiating with respect to the input only
        (``torch.autograd.grad(y, x)``); VAT's power iteration uses this.
        """
        for parameter in self.parameters():
            parameter.requires_grad = bool(requires_grad)
        return self

    def train(self, mode=True):
        """Switch this module and its children to training (or evaluation) mode."""
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    # ------------------------------------------------------------ state dicts
    def state_dict(self):
        """Copies of all parameters and buffers, keyed and ordered as PyTorch would.

        Returns
        -------
        OrderedDict of str to ndarray
            ``Linear.weight`` has shape (out_features, in_features), as in ``torch.nn``.
        """
        state = OrderedDict()
        self._collect_state(state, "")
        return state

    def _collect_state(self, state, prefix):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                state[prefix + name] = value.data.copy()
            elif name in self._buffer_names:
                state[prefix + name] = np.array(value, copy=True)
            elif isinstance(value, Module):
                value._collect_state(state, prefix + name + ".")

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into this module's parameters and buffers.

        Values are written into the existing arrays (cast to their dtype), so
        parameters that are views into a flat buffer stay views.

        Parameters
        ----------
        state_dict : mapping of str to array_like
            For example the output of :meth:`state_dict`, or a ``torch.nn`` module's
            state dict converted with ``{k: v.numpy() for k, v in sd.items()}``.
        strict : bool, default=True
            Raise if keys are missing or unexpected.
        """
        targets = OrderedDict((name, p.data) for name, p in self.named_parameters())
        targets.update(self.named_buffers())
        missing = [key for key in targets if key not in state_dict]
        unexpected = [key for key in state_dict if key not in targets]
        if strict and (missing or unexpected):
            raise KeyError(
                f"state_dict does not match {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        for key, target in targets.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            if value.shape != target.shape:
                raise ValueError(
                    f"shape mismatch for {key!r}: module has {target.shape}, "
                    f"state_dict has {value.shape}"
                )
            target[...] = value
        return self

    # ------------------------------------------------------------------ dtype
    def to(self, dtype):
        """Cast all floating parameters and buffers to ``dtype`` (returns self).

        Casting allocates new arrays, so call :meth:`flatten_parameters` again
        afterwards if the parameters should share one buffer.
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"modules hold floating-point parameters, got dtype {dtype}")
        for module in self.modules():
            for name, value in list(vars(module).items()):
                if isinstance(value, Parameter):
                    value.data = value.data.astype(dtype)
                    value.grad = value.grad.astype(dtype)
                elif name in module._buffer_names and np.asarray(value).dtype.kind == "f":
                    setattr(module, name, np.asarray(value).astype(dtype))
            if "dtype" in vars(module):
                module.dtype = dtype
        return self

    def modules(self):
        """This module and all modules below it, depth first."""
        found = [self]
        for child in self.children():
            found.extend(child.modules())
        return found

    def flatten_parameters(self):
        """Move all parameters into one contiguous data buffer and one gradient buffer.

        Afterwards every ``Parameter.data`` (and ``.grad``) is a view into a single
        1-D array, in :meth:`parameters` order, so an optimizer can update the whole
        model with a few whole-buffer vector operations instead of one small
        operation per array.

        Returns
        -------
        self
        """
        parameters = self.parameters()
        if not parameters:
            return self
        dtypes = {parameter.dtype for parameter in parameters}
        if len(dtypes) != 1:
            raise TypeError(f"cannot flatten parameters of mixed dtypes {sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
        total = sum(parameter.data.size for parameter in parameters)
        data_buffer = np.empty(total, dtype=dtype)
        grad_buffer = np.empty(total, dtype=dtype)
        offset = 0
        for parameter in parameters:
            size, shape = parameter.data.size, parameter.data.shape
            data_view = data_buffer[offset:offset + size].reshape(shape)
            grad_view = grad_buffer[offset:offset + size].reshape(shape)
            data_view[...] = parameter.data
            grad_view[...] = parameter.grad
            parameter.data, parameter.grad = data_view, grad_view
            offset += size
        return self

    # ----------------------------------------------------------------- display
    def extra_repr(self):
        return ""

    def __repr__(self):
        children = self.named_children()
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)


def _check_input(module, x, n_features):
    """Raise a clear error for input a layer cannot take (wrong rank, width or dtype)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{type(module).__name__} expects an ndarray, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(
            f"{type(module).__name__} expects input of shape (n_samples, {n_features}), "
            f"got {x.shape}"
        )
    if x.dtype != module.dtype:
        raise TypeError(
            f"{type(module).__name__} holds {module.dtype} parameters but got {x.dtype} input; "
            f"convert the input with x.astype(np.{module.dtype}) or the module with .to()"
        )


def _random_generator(rng):
    from .validation import check_random_state

    return check_random_state(rng)


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
        rng = _random_generator(rng)
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
        _check_input(self, x, self.in_features)
        return self._forward(x, None)

    def _forward_scratch(self, x):
        _check_input(self, x, self.in_features)
        return self._forward(x, self._workspace_array(
            "output", (x.shape[0], self.out_features), self.dtype))

    def _forward(self, x, out):
        self._x = x
        # weight.T is a transposed view: matmul hands BLAS a transpose flag, no copy.
        y = np.matmul(x, self.weight.data.T, out=out)
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, dy, input_grad=True):
        """Gradients of ``y = x W^T + b``.

        dL/dW += dy^T x,  dL/db += sum over rows of dy,  dL/dx = dy W.
        """
        return self._backward(dy, input_grad, scratch=False)

    def _backward_scratch(self, dy, input_grad=True):
        return self._backward(dy, input_grad, scratch=True)

    def _backward(self, dy, input_grad, scratch):
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward")
        x = self._x
        # After zero_grad the products go straight into .grad (no fill, no extra pass
        # over the weights); otherwise they are added. Mixed dtypes take the plain path.
        direct = dy.dtype == x.dtype == self.dtype
        if self.weight.requires_grad:
            if direct:
                self.weight._overwrite_grad(lambda out: np.matmul(dy.T, x, out=out))
            else:
                self.weight.grad += np.matmul(dy.T, x)
        if self.bias is not None and self.bias.requires_grad:
            if direct:
                self.bias._overwrite_grad(lambda out: np.sum(dy, axis=0, out=out))
            else:
                self.bias.grad += dy.sum(axis=0)
        if not input_grad:
            return None
        if not scratch:
            return np.matmul(dy, self.weight.data)
        dtype = np.result_type(dy, self.weight.data)
        dx = self._workspace_array("input_grad", self._x.shape, dtype)
        return np.matmul(dy, self.weight.data, out=dx)

    def extra_repr(self):
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


# --------------------------------------------------------------------- activations
# Each activation caches what its derivative needs — mostly its *output*, as in
# scikit-learn's derivative table, because the output is needed downstream anyway.


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
        return self._forward(x, x if self.inplace else None)

    def _forward_scratch(self, x):
        if self.inplace or not isinstance(x, np.ndarray):
            return self.forward(x)
        return self._forward(x, self._workspace_array("output", x.shape, x.dtype))

    def _forward(self, x, out):
        if isinstance(x, np.ndarray) and x.ndim >= 1 and x.dtype.kind == "f":
            # Against an array of zeros NumPy runs its SIMD loop: 2-3x faster than
            # against the scalar 0. One zero row broadcasts over any batch size.
            zeros = self._workspace_array("zeros", x.shape[1:], x.dtype)
            zeros.fill(0)
        else:
            zeros = 0
        self._y = np.maximum(x, zeros, out=out)
        return self._y

    def backward(self, dy, input_grad=True):
        """dy/dx = 1 where y > 0, else 0 (PyTorch's choice of 0 at x = 0)."""
        return dy * (self._y > 0) if input_grad else None

    def _backward_scratch(self, dy, input_grad=True):
        if not input_grad:
            return None
        if not isinstance(dy, np.ndarray) or dy.shape != self._y.shape:
            return self.backward(dy)
        positive = np.greater(self._y, 0, out=self._workspace_array("mask", self._y.shape, bool))
        dx = self._workspace_array("input_grad", dy.shape, np.result_type(dy, self._y))
        return np.multiply(dy, positive, out=dx)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """``y = x`` for x > 0, ``negative_slope * x`` otherwise."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)
        self._positive = None

    def forward(self, x):
        self._positive = x > 0
        return np.where(self._positive, x, self.negative_slope * x)

    def backward(self, dy, input_grad=True):
        """dy/dx = 1 for x > 0, ``negative_slope`` otherwise."""
        if not input_grad:
            return None
        return np.where(self._positive, dy, self.negative_slope * dy)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    """``y = x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = float(alpha)
        self._x = self._y = None

    def forward(self, x):
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
        return f"alpha={self.alpha}"


class Sigmoid(Module):
    """``y = 1 / (1 + exp(-x))``, evaluated without overflow for any x."""

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x):
        from scipy.special import expit

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
        return f"beta={self.beta}, threshold={self.threshold}"


class Identity(Module):
    """``y = x``."""

    def forward(self, x):
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
        from .functional import softmax

        self._y = softmax(x, axis=self.dim)
        return self._y

    def backward(self, dy, input_grad=True):
        """dx = y * (dy - sum(dy * y, dim))."""
        from .functional import softmax_backward

        return softmax_backward(dy, self._y, axis=self.dim) if input_grad else None

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """``y = log_softmax(x)`` along ``dim``, computed in log space."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim
        self._y = None

    def forward(self, x):
        from .functional import log_softmax

        self._y = log_softmax(x, axis=self.dim)
        return self._y

    def backward(self, dy, input_grad=True):
        """dx = dy - exp(y) * sum(dy, dim)."""
        from .functional import log_softmax_backward

        return log_softmax_backward(dy, self._y, axis=self.dim) if input_grad else None

    def extra_repr(self):
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
    """Build an activation module from its name in :data:`ACTIVATIONS`."""
    try:
        return ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; valid names are {sorted(ACTIVATIONS)}"
        ) from None


# ----------------------------------------------------------------- normalisation


class BatchNorm1d(Module):
    """Batch normalisation over the rows of a (n_samples, num_features) batch.

    In training mode each feature is normalised with the batch mean and the
    *biased* batch variance, and the running estimates are updated with the
    *unbiased* variance; in evaluation mode the running estimates are used.
    Defaults and update rule are PyTorch's.

    Parameters
    ----------
    num_features : int
    eps : float, default=1e-5
        Added to the variance before the square root.
    momentum : float or None, default=0.1
        ``running = (1 - momentum) * running + momentum * batch``; None means a
        cumulative average over all batches seen (PyTorch's ``momentum=None``).
    affine : bool, default=True
        Learn a per-feature scale ``weight`` (init 1) and shift ``bias`` (init 0).
    track_running_stats : bool, default=True
        Update the running estimates in training mode. Switching it off for a
        forward pass normalises with the batch statistics without touching the
        running estimates, which is what passes on perturbed copies of the data
        (VAT) need. The buffers exist either way.
    dtype : numpy dtype, default=np.float32
    """

    _buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float32):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.dtype = np.dtype(dtype)
        self.weight = Parameter(np.ones(self.num_features, dtype=self.dtype)) if affine else None
        self.bias = Parameter(np.zeros(self.num_features, dtype=self.dtype)) if affine else None
        self.running_mean = np.zeros(self.num_features, dtype=self.dtype)
        self.running_var = np.ones(self.num_features, dtype=self.dtype)
        self.num_batches_tracked = np.array(0, dtype=np.int64)
        self._x_hat = self._inv_std = self._x = self._mean = None
        self._used_batch_statistics = False

    def forward(self, x):
        _check_input(self, x, self.num_features)
        return self._forward(x, None)

    def _forward_scratch(self, x):
        _check_input(self, x, self.num_features)
        return self._forward(x, self._workspace_array("output", x.shape, self.dtype))

    def _forward(self, x, out):
        if self.training:
            n_samples = x.shape[0]
            if n_samples < 2:
                raise ValueError(
                    "BatchNorm1d needs more than 1 sample per batch in training mode, "
                    f"got input of shape {x.shape}"
                )
            mean = x.mean(axis=0)
            # x_hat is cached for backward only, so in training (fixed batch shape)
            # its array is reused from call to call.
            x_hat = np.subtract(x, mean, out=self._workspace_array("x_hat", x.shape, self.dtype))
            # Biased variance: sum over rows of the squared centred input, in one pass.
            variance = np.einsum("ij,ij->j", x_hat, x_hat)
            variance /= n_samples
            if self.track_running_stats:
                self._update_running_statistics(mean, variance, n_samples)
        else:
            return self._forward_with_running_statistics(x, out)
        self._used_batch_statistics = True
        self._inv_std = 1.0 / np.sqrt(variance + self.eps)
        x_hat *= self._inv_std
        self._x_hat, self._x = x_hat, None
        if not self.affine:
            # A copy: the caller may modify the output (an in-place ReLU does).
            if out is None:
                return x_hat.copy()
            np.copyto(out, x_hat)
            return out
        y = np.multiply(x_hat, self.weight.data, out=out)
        y += self.bias.data
        return y

    def _forward_with_running_statistics(self, x, out):
        """Evaluation mode: one new array; the input, not x_hat, is kept for backward.

        Prediction runs on large chunks, so this keeps one chunk-sized array fewer
        alive; the rarely needed x_hat is rebuilt in backward from the kept input.
        """
        self._used_batch_statistics = False
        self._mean = self.running_mean.copy()
        self._inv_std = 1.0 / np.sqrt(self.running_var + self.eps)
        self._x, self._x_hat = x, None
        y = np.subtract(x, self._mean, out=out)
        if self.affine:
            y *= self._inv_std * self.weight.data
            y += self.bias.data
        else:
            y *= self._inv_std
        return y

    def _update_running_statistics(self, mean, variance, n_samples):
        self.num_batches_tracked += 1
        factor = 1.0 / self.num_batches_tracked if self.momentum is None else self.momentum
        unbiased_variance = variance * (n_samples / (n_samples - 1))
        self.running_mean *= 1 - factor
        self.running_mean += factor * mean
        self.running_var *= 1 - factor
        self.running_var += factor * unbiased_variance

    def backward(self, dy, input_grad=True):
        """Gradients through the affine map and, in training mode, the batch statistics.

        With x_hat = (x - mean) * inv_std and g = dy * weight (or dy if not affine):
        dL/dweight += sum_rows(dy * x_hat), dL/dbias += sum_rows(dy), and

        * training: dL/dx = inv_std * (g - mean_rows(g) - x_hat * mean_rows(g * x_hat)),
          because mean and variance depend on every row of the batch;
        * evaluation: dL/dx = inv_std * g, the running statistics being constants.

        In training mode this is computed as
        ``weight * inv_std * (dy - sum_rows(dy) / n - x_hat * sum_rows(dy * x_hat) / n)``,
        reusing the two row sums of the parameter gradients (identical algebra, four
        passes over the batch instead of ten).
        """
        return self._backward(dy, input_grad, None)

    def _backward_scratch(self, dy, input_grad=True):
        if not input_grad or self._inv_std is None:
            return self._backward(dy, input_grad, None)
        dtype = np.result_type(dy, self._inv_std)
        return self._backward(dy, input_grad, self._workspace_array("input_grad", dy.shape, dtype))

    def _backward(self, dy, input_grad, out):
        if self._inv_std is None:
            raise RuntimeError("BatchNorm1d.backward called before forward")
        x_hat = self._x_hat
        if x_hat is None and self.affine and self.weight.requires_grad:
            x_hat = (self._x - self._mean) * self._inv_std  # evaluation mode, see forward
        through_statistics = input_grad and self._used_batch_statistics
        train_weight = self.affine and self.weight.requires_grad
        train_bias = self.affine and self.bias.requires_grad
        dy_sum = dy.sum(axis=0) if train_bias or through_statistics else None
        dy_x_hat_sum = np.einsum("ij,ij->j", dy, x_hat) \
            if train_weight or through_statistics else None
        if train_weight:
            self.weight.grad += dy_x_hat_sum
        if train_bias:
            self.bias.grad += dy_sum
        if not input_grad:
            return None
        scale = self._inv_std * self.weight.data if self.affine else self._inv_std
        if not self._used_batch_statistics:
            return np.multiply(dy, scale, out=out)
        n_samples = dy.shape[0]
        dx = np.multiply(x_hat, dy_x_hat_sum / n_samples, out=out)
        dx += dy_sum / n_samples
        np.subtract(dy, dx, out=dx)
        dx *= scale
        return dx

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}"
        )


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
        self.rng = _random_generator(rng)
        self._mask = None

    def forward(self, x):
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
        return f"p={self.p}"


class Sequential(Module):
    """Modules applied in order; children are named ``"0"``, ``"1"``, ... like PyTorch.

    ``backward(dy, input_grad=False)`` skips the input gradient of the first module,
    which saves a full GEMM when the network input needs no gradient.
    """

    def __init__(self, *modules):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes Modules, argument {index} is {type(module).__name__}")
            setattr(self, str(index), module)

    def __len__(self):
        return len(self.children())

    def __iter__(self):
        return iter(self.children())

    def __getitem__(self, index):
        return self.children()[index]

    @property
    def dtype(self):
        dtypes = {parameter.dtype for parameter in self.parameters()}
        return dtypes.pop() if len(dtypes) == 1 else None

    def forward(self, x):
        return self._forward_chain(x, scratch_last=False)

    def _forward_scratch(self, x):
        return self._forward_chain(x, scratch_last=True)

    def _forward_chain(self, x, scratch_last):
        """Each module in turn. In training mode the activations passed from one module
        to the next are reused buffers (``_forward_scratch``); the last module's output
        is a fresh array unless this Sequential is itself an inner module. Evaluation
        mode (prediction on large chunks) keeps no batch-sized buffers."""
        modules = self.children()
        if not self.training:
            for module in modules:
                x = module.forward(x)
            return x
        last = len(modules) - 1
        for index, module in enumerate(modules):
            x = module._forward_scratch(x) if index < last or scratch_last else module.forward(x)
        return x

    def backward(self, dy, input_grad=True):
        """Chain rule: each module's backward, last to first."""
        return self._backward_chain(dy, input_grad, scratch_first=False)

    def _backward_scratch(self, dy, input_grad=True):
        return self._backward_chain(dy, input_grad, scratch_first=True)

    def _backward_chain(self, dy, input_grad, scratch_first):
        modules = self.children()
        if not modules:
            return dy if input_grad else None
        if not self.training:
            for module in reversed(modules[1:]):
                dy = module.backward(dy)
            return modules[0].backward(dy, input_grad=input_grad)
        for module in reversed(modules[1:]):
            dy = module._backward_scratch(dy)
        if scratch_first:
            return modules[0]._backward_scratch(dy, input_grad=input_grad)
        return modules[0].backward(dy, input_grad=input_grad)
