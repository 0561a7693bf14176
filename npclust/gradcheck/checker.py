"""Finite-difference gradient checks for functions, losses and Modules.

Every backward pass in npclust is verified against *central differences*::

    df/dx_i  ~  (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)

The truncation error of this quotient is O(eps^2) (the even Taylor terms cancel),
while the rounding error is O(u |f| / eps) with u the unit roundoff of the dtype.
Their sum is smallest near eps = u^(1/3). In float64 (u = 1.1e-16) that is about
5e-6, so the default ``eps=1e-6`` leaves errors around 1e-10 relative to ``|f|``: far
below any real bug. In float32 (u = 6e-8) the best achievable error is about 1e-5
to 1e-3, the same size as the bugs being hunted, so checks refuse float32 input
instead of returning numbers that mean nothing.

Each coordinate is perturbed *in place* and restored bit for bit afterwards. That
lets the checked function read the array through other references (a module's
``Parameter.data``, for instance) rather than through its argument.
"""

from typing import NamedTuple

import numpy as np

from ..validation import check_random_state

__all__ = [
    "GradcheckResult",
    "numerical_gradient",
    "check_gradient",
    "check_function",
    "check_module",
]


class GradcheckResult(NamedTuple):
    """Outcome of comparing one analytic gradient with central differences.

    Attributes
    ----------
    name : str
        What was checked: ``"input"``, a parameter name such as ``"0.weight"``, or
        the name given to :func:`check_gradient`.
    max_abs_error : float
        ``max |analytic - numerical|`` over the checked coordinates.
    max_rel_error : float
        ``max |analytic - numerical| / max(|analytic|, |numerical|)`` over the
        checked coordinates, a coordinate where both are exactly 0 counting as 0.
        Reported for reading; the pass criterion is the one described in
        :func:`check_gradient`.
    passed : bool
    """

    name: str
    max_abs_error: float
    max_rel_error: float
    passed: bool


def _require_float64(x, what):
    """Raise TypeError unless ``x`` is a float64 ndarray we may write to."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what} must be a numpy ndarray, got {type(x).__name__}")
    if x.dtype != np.float64:
        raise TypeError(
            f"{what} has dtype {x.dtype}; gradient checks need float64 because central "
            "differences in lower precision have errors as large as the bugs they look "
            f"for. Convert arrays with .astype(np.float64) and modules with .to(np.float64)"
        )
    if not x.flags.writeable:
        raise ValueError(f"{what} is read-only; numerical gradients perturb it in place")


def _probed_indices(size, indices, n_probes, rng):
    """Flat (C-order) indices of the coordinates to probe, sorted, without repeats."""
    if indices is not None and n_probes is not None:
        raise ValueError("give either indices or n_probes, not both")
    if indices is not None:
        flat = np.unique(np.asarray(indices, dtype=np.int64).ravel())
        if flat.size and (flat[0] < 0 or flat[-1] >= size):
            raise ValueError(f"indices must lie in [0, {size}), got range [{flat[0]}, {flat[-1]}]")
        return flat
    if n_probes is not None:
        if isinstance(n_probes, bool) or not isinstance(n_probes, (int, np.integer)) or n_probes < 1:
            raise ValueError(f"n_probes must be a positive integer, got {n_probes!r}")
        if n_probes >= size:
            return np.arange(size)
        return np.sort(check_random_state(rng).choice(size, size=n_probes, replace=False))
    return np.arange(size)


def _scalar(value):
    """``float(value)`` for a Python or size-1 NumPy scalar; ValueError otherwise."""
    value = np.asarray(value)
    if value.size != 1:
        raise ValueError(f"the checked function must return a scalar, got shape {value.shape}")
    return float(value.reshape(()))


def numerical_gradient(f, x, eps=1e-6, indices=None, n_probes=None, rng=None):
    """Central-difference gradient of a scalar function, perturbing ``x`` in place.

    For each probed coordinate i, ``x[i]`` is set to ``x[i] + eps`` and to
    ``x[i] - eps``, ``f(x)`` is evaluated at both, and the entry is then restored to
    its exact original bits (also when ``f`` raises). The quotient divides by the
    step actually taken, ``(x[i] + eps) - (x[i] - eps)`` as rounded in float64,
    rather than by ``2 eps``, which removes the representation error of the step.

    Parameters
    ----------
    f : callable
        ``f(x)`` returns a scalar. It may ignore its argument and read ``x`` through
        another reference instead (e.g. a closure over a module whose parameter
        *is* ``x``); the perturbation is visible either way.
    x : ndarray of dtype float64
        The point to differentiate at. Any shape and strides; must be writeable.
    eps : float, default=1e-6
        Half-width of the difference. Near the float64 optimum (u^(1/3) ~ 5e-6),
        giving errors around 1e-10 relative to |f|.
    indices : array_like of int, optional
        Flat C-order indices of the coordinates to probe (others are left out).
    n_probes : int, optional
        Probe this many distinct coordinates chosen at random by ``rng``; use it for
        large arrays, where one pair of function evaluations per coordinate is too
        slow. At most one of ``indices`` and ``n_probes`` may be given.
    rng : None, int or numpy.random.Generator
        Chooses the coordinates when ``n_probes`` is given.

    Returns
    -------
    ndarray of the same shape as ``x``, dtype float64
        The estimated gradient. Coordinates that were not probed are NaN, so a
        subset can never be mistaken for a full gradient.

    Raises
    ------
    TypeError
        If ``x`` is not a float64 ndarray.
    """
    _require_float64(x, "x")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    probed = _probed_indices(x.size, indices, n_probes, rng)
    gradient = np.full(x.shape, np.nan)
    gradient_flat = gradient.reshape(-1)  # a fresh C-contiguous array: reshape is a view
    for flat_index in probed:
        position = np.unravel_index(flat_index, x.shape)
        original = x[position]
        plus, minus = original + eps, original - eps
        try:
            x[position] = plus
            f_plus = _scalar(f(x))
            x[position] = minus
            f_minus = _scalar(f(x))
        finally:
            x[position] = original
        gradient_flat[flat_index] = (f_plus - f_minus) / (plus - minus)
    return gradient


def check_gradient(
    f, x, analytic, eps=1e-6, rtol=1e-4, atol=1e-7, name="x", indices=None, n_probes=None, rng=None
):
    """Compare an analytic gradient of a scalar function with central differences.

    Pass criterion, the one ``numpy.allclose`` uses with the numerical gradient n
    as reference: every checked coordinate satisfies

        |a - n| <= atol + rtol * |n|

    and both a and n are finite. ``rtol=1e-4`` is about six orders of magnitude looser
    than the float64 central-difference error (~1e-10 relative) and tighter than
    the relative size of a typical backward-pass bug (a missing factor, a
    transposed term, a dropped summand); ``atol=1e-7`` keeps coordinates whose true
    gradient is 0 from failing on the ~1e-10 absolute noise.

    Parameters
    ----------
    f : callable
        ``f(x)`` returns a scalar; see :func:`numerical_gradient`.
    x : ndarray of dtype float64
        Perturbed in place coordinate by coordinate and restored exactly.
    analytic : array_like of the same shape as ``x``
        The gradient to check.
    eps, rtol, atol : float
        Difference step and tolerances of the pass criterion.
    name : str, default="x"
        Label stored in the result.
    indices, n_probes, rng
        Check only a subset of coordinates; see :func:`numerical_gradient`.

    Returns
    -------
    GradcheckResult
    """
    _require_float64(x, name)
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != x.shape:
        raise ValueError(
            f"analytic gradient for {name!r} has shape {analytic.shape}, expected {x.shape}"
        )
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"rtol and atol must be non-negative, got rtol={rtol!r}, atol={atol!r}")
    probed = _probed_indices(x.size, indices, n_probes, rng)
    if probed.size == 0:
        return GradcheckResult(name, 0.0, 0.0, True)
    numerical = numerical_gradient(f, x, eps=eps, indices=probed).reshape(-1)[probed]
    analytic = analytic.reshape(-1)[probed]
    abs_error = np.abs(analytic - numerical)
    scale = np.maximum(np.abs(analytic), np.abs(numerical))
    # 0/0 where both gradients are exactly zero: that coordinate agrees perfectly.
    rel_error = np.divide(abs_error, scale, out=np.zeros_like(abs_error), where=scale > 0)
    finite = np.isfinite(analytic) & np.isfinite(numerical)
    passed = bool(np.all(finite & (abs_error <= atol + rtol * np.abs(numerical))))
    if finite.all():
        return GradcheckResult(name, float(abs_error.max()), float(rel_error.max()), passed)
    return GradcheckResult(name, float("inf"), float("inf"), False)


def check_function(
    f_with_grads, *inputs, wrt=None, names=None, eps=1e-6, rtol=1e-4, atol=1e-7, n_probes=None,
    rng=None,
):
    """Check a function that returns its value together with its gradients.

    This is the calling convention of :mod:`npclust.losses`:
    ``value, grad_0, grad_1, ... = f_with_grads(*inputs)``, one gradient per
    differentiable input, in argument order.

    Parameters
    ----------
    f_with_grads : callable
        Returns ``(value, grad, ...)``. Bind keyword arguments with a lambda or
        ``functools.partial``.
    *inputs : array_like
        Positional arguments of ``f_with_grads``. The differentiated ones must be
        float64 ndarrays; the others (integer labels, say) are passed unchanged.
    wrt : sequence of int, optional
        Positions in ``inputs`` that the returned gradients belong to, in the order
        returned. Default: the first ``len(grads)`` inputs.
    names : sequence of str, optional
        One label per entry of ``wrt``; default ``"arg0"``, ``"arg1"``, ... by position.
    eps, rtol, atol : float
        See :func:`check_gradient` for the pass criterion.
    n_probes : int, optional
        Check at most this many random coordinates per input.
    rng : None, int or numpy.random.Generator
        Chooses the probed coordinates.

    Returns
    -------
    list of GradcheckResult, one per differentiated input
    """
    returned = f_with_grads(*inputs)
    if not isinstance(returned, tuple) or len(returned) < 2:
        raise ValueError("f_with_grads must return a tuple (value, grad, ...)")
    analytic_grads = returned[1:]
    wrt = list(range(len(analytic_grads))) if wrt is None else list(wrt)
    if len(wrt) != len(analytic_grads):
        raise ValueError(
            f"f_with_grads returned {len(analytic_grads)} gradients but wrt names {len(wrt)} inputs"
        )
    names = [f"arg{position}" for position in wrt] if names is None else list(names)
    if len(names) != len(wrt):
        raise ValueError(f"got {len(names)} names for {len(wrt)} gradients")
    rng = check_random_state(rng)

    def value_only(_):
        # The perturbed array is one of ``inputs`` itself, so a fresh call sees it.
        return f_with_grads(*inputs)[0]

    results = []
    for position, name, analytic in zip(wrt, names, analytic_grads):
        x = inputs[position]
        _require_float64(x, f"input {name!r}")
        results.append(
            check_gradient(
                value_only, x, analytic, eps=eps, rtol=rtol, atol=atol, name=name,
                n_probes=n_probes, rng=rng,
            )
        )
    return results


def check_module(module, x, eps=1e-6, rtol=1e-4, atol=1e-7, n_probes=None, rng=None):
    """Check a Module's backward pass for its input and every parameter.

    The scalar checked is ``L = sum(module(x) * dy)`` with a fixed random upstream
    gradient ``dy``, so dL/dy = dy and ``module.backward(dy)`` must return dL/dx and
    accumulate dL/dparameter. A random ``dy`` exercises every output coordinate
    with a different weight, which a plain ``sum`` would not.

    Each numerical evaluation re-runs ``forward`` on the perturbed input or
    parameters, in the module's current mode. That is what makes training-mode
    BatchNorm checkable: perturbing one sample moves the batch statistics, exactly
    as the analytic gradient accounts for. Modules with randomness in the forward
    pass (Dropout in training mode) must be put in ``eval()`` mode or use p=0,
    since every evaluation would otherwise draw a new mask.

    Parameters
    ----------
    module : npclust.nn.Module
        With float64 parameters (``module.to(np.float64)``).
    x : ndarray of dtype float64
        A batch of input. Every forward call receives a fresh copy, so modules that
        overwrite their input (``ReLU(inplace=True)``) cannot corrupt it.
    eps, rtol, atol : float
        See :func:`check_gradient` for the pass criterion.
    n_probes : int, optional
        Check at most this many random coordinates of each array.
    rng : None, int or numpy.random.Generator
        Draws ``dy`` (standard normal) and the probed coordinates. None means seed 0,
        so a check is reproducible unless asked otherwise.

    Returns
    -------
    list of GradcheckResult
        ``"input"`` first, then each parameter under its ``named_parameters`` name
        (parameters with ``requires_grad=False`` are skipped).

    Notes
    -----
    Parameters and buffers (running statistics, which each training-mode forward
    call updates) are restored to their values from before the check. The
    parameters' ``.grad`` hold the analytic gradient for ``dy`` afterwards.
    """
    _require_float64(x, "input x")
    # A frozen parameter (requires_grad=False) gets no gradient by design: nothing to check.
    named_parameters = [
        (name, parameter) for name, parameter in module.named_parameters() if parameter.requires_grad
    ]
    for name, parameter in named_parameters:
        _require_float64(parameter.data, f"parameter {name!r}")
    rng = check_random_state(0 if rng is None else rng)
    saved_buffers = [(buffer, np.array(buffer, copy=True)) for _, buffer in module.named_buffers()]
    try:
        module.zero_grad()
        y = module(x.copy())
        dy = rng.standard_normal(np.shape(y))
        analytic_input_grad = module.backward(dy)
        analytic_parameter_grads = [parameter.grad.copy() for _, parameter in named_parameters]

        def weighted_output_sum(_):
            return np.sum(module(x.copy()) * dy)

        check = dict(eps=eps, rtol=rtol, atol=atol, n_probes=n_probes, rng=rng)
        results = [check_gradient(weighted_output_sum, x, analytic_input_grad, name="input", **check)]
        for (name, parameter), analytic in zip(named_parameters, analytic_parameter_grads):
            results.append(check_gradient(weighted_output_sum, parameter.data, analytic, name=name, **check))
    finally:
        for buffer, saved in saved_buffers:
            buffer[...] = saved
    return results
