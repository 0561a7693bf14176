"""Trainable arrays, and the flat buffer that lets an optimizer update them all at once."""

import numpy as np

__all__ = ["Parameter", "FlatBuffer", "flatten_parameters"]


class Parameter:
    """A trainable array and the gradient accumulated for it.

    Parameters
    ----------
    data : ndarray
        The values. Optimizers update it in place, so it may be a view into a
        larger buffer (see :func:`flatten_parameters`).

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
    and the array is filled with zeros the first time ``grad`` is read (or
    :meth:`materialize_grad` is called). :meth:`accumulate_grad` writes a product
    that covers the whole gradient straight into the array instead of adding it to
    zeros, saving the fill and one pass over the weights per step, as PyTorch does
    with ``zero_grad(set_to_none=True)``. Through the attribute ``grad`` a pending
    zero is never visible; only an alias kept from before ``zero_grad``
    (``g = p.grad``) still holds the old values until the next backward or read, as
    a PyTorch tensor kept across ``zero_grad(set_to_none=True)`` does.
    """

    __slots__ = ("data", "_grad", "_grad_is_zero", "requires_grad", "_flat")

    def __init__(self, data):
        self.data = np.asarray(data)
        self.grad = np.zeros_like(self.data)
        self.requires_grad = True
        self._flat = None

    @property
    def grad(self):
        self.materialize_grad()
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = value
        self._grad_is_zero = False

    def zero_grad(self):
        """Make the gradient zero (lazily: see the class Notes)."""
        self._grad_is_zero = True

    def materialize_grad(self):
        """Write a pending zero (see the class Notes) into the gradient array.

        Code that reads the gradient array through another view of it, such as an
        optimizer working on the :class:`FlatBuffer`, calls this first.
        """
        if self._grad_is_zero:
            self._grad.fill(0)
            self._grad_is_zero = False

    def accumulate_grad(self, compute, *operands, **kwargs):
        """``grad += compute(*operands, **kwargs)``, written in place when ``grad`` is zero.

        ``compute`` is a NumPy function with an ``out`` argument (``np.matmul``,
        ``np.sum``). After :meth:`zero_grad` its result goes straight into the
        gradient array; otherwise, or when the operands' dtype differs from the
        gradient's, it is computed into a new array and added.

        Parameters
        ----------
        compute : callable
            Called as ``compute(*operands, out=array_or_absent, **kwargs)``.
        *operands : ndarray
            The arrays ``compute`` combines, e.g. ``dy.T, x`` for ``np.matmul``.
        **kwargs
            Further keyword arguments of ``compute``, e.g. ``axis=0`` for ``np.sum``.
        """
        if self._grad_is_zero and np.result_type(*operands) == self._grad.dtype:
            compute(*operands, out=self._grad, **kwargs)
            self._grad_is_zero = False
        else:
            self.grad += compute(*operands, **kwargs)

    @property
    def flat(self):
        """``(buffer, offset)`` if ``data`` and ``grad`` are views into a :class:`FlatBuffer`.

        ``offset`` is the index of this parameter's first element in the buffer.
        None when the parameter was never flattened, or its ``data`` or ``grad`` was
        rebound since (``Module.to()`` does that).
        """
        if self._flat is None:
            return None
        buffer, offset, data, grad = self._flat
        if self.data is not data or self._grad is not grad:
            return None
        return buffer, offset

    def __getstate__(self):
        """Pickle and copy without the flat-buffer record.

        A copy's views become separate arrays, so the record would point the copy's
        optimizer at a buffer its arrays are no longer part of.
        """
        state = {name: getattr(self, name) for name in self.__slots__}
        state["_flat"] = None
        return None, state

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class FlatBuffer:
    """One contiguous 1-D data array and one gradient array that parameters are views into.

    Built by :func:`flatten_parameters`; each parameter records its place in it
    (:attr:`Parameter.flat`), which is how an optimizer knows it may update a run of
    parameters as one array.

    Attributes
    ----------
    data, grad : ndarray of shape (n_elements,)
    """

    __slots__ = ("data", "grad")

    def __init__(self, size, dtype):
        self.data = np.empty(size, dtype=dtype)
        self.grad = np.empty(size, dtype=dtype)

    def __repr__(self):
        return f"FlatBuffer(size={self.data.size}, dtype={self.data.dtype})"


def flatten_parameters(parameters):
    """Move ``parameters`` into one :class:`FlatBuffer`, end to end in the given order.

    Afterwards every ``Parameter.data`` (and ``.grad``) is a view into the buffer,
    holding the same values, so an optimizer can update consecutive parameters
    with a few whole-buffer vector operations instead of one small operation per
    array.

    Parameters
    ----------
    parameters : list of Parameter
        All of one floating dtype.

    Returns
    -------
    FlatBuffer or None
        None when ``parameters`` is empty.
    """
    if not parameters:
        return None
    dtypes = {parameter.dtype for parameter in parameters}
    if len(dtypes) != 1:
        raise TypeError(f"cannot flatten parameters of mixed dtypes {sorted(map(str, dtypes))}")
    buffer = FlatBuffer(sum(parameter.data.size for parameter in parameters), dtypes.pop())
    offset = 0
    for parameter in parameters:
        size, shape = parameter.data.size, parameter.data.shape
        data = buffer.data[offset:offset + size].reshape(shape)
        grad = buffer.grad[offset:offset + size].reshape(shape)
        data[...] = parameter.data
        grad[...] = parameter.grad
        parameter.data, parameter.grad = data, grad
        parameter._flat = (buffer, offset, data, grad)
        offset += size
    return buffer
