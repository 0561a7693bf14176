"""Numerically stable log-sum-exp, softmax, log-softmax and entropy, with their VJPs.

Every function takes NumPy's ``axis`` argument and works on arrays of any shape.
Floating input keeps its dtype (float32 stays float32); other input is computed in
float64. The forward functions shift by the maximum along ``axis`` before
exponentiating, so logits of any magnitude neither overflow nor lose the distribution
to underflow. Non-finite input follows ``scipy.special`` value for value.

Each backward function sits right after its forward and computes a vector-Jacobian
product ``dx = dy @ J`` from the forward's *output* (plus, where unavoidable, its
input), so a caller caches nothing beyond what it already holds.

Warnings: NumPy warns only where a result is undefined (NaN out of non-NaN input,
e.g. the softmax of a row that is all ``-inf``), as ``scipy.special`` does. Steps
whose floating-point exception yields the correct value (``log(0) = -inf`` for an
all ``-inf`` row of ``logsumexp``; ``x - max`` overflowing to ``-inf`` for entries
that are ``exp``-ed to 0 anyway) are silenced, each in the scope of one operation.
"""

import numpy as np
from scipy.special import entr

__all__ = [
    "logsumexp",
    "logsumexp_backward",
    "softmax",
    "softmax_backward",
    "log_softmax",
    "log_softmax_backward",
    "entropy",
    "entropy_backward",
    "entropy_from_probs",
]


def _as_float(x):
    """``x`` as an ndarray, converted to float64 unless it is already floating."""
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _normalize_axis(axis, ndim):
    """``axis`` as an int or tuple; ``None`` means every axis."""
    return tuple(range(ndim)) if axis is None else axis


def _expand_reduced(a, axis, ndim):
    """Re-insert the reduced ``axis`` into ``a`` unless it was kept (keepdims)."""
    a = np.asarray(a)
    return a if a.ndim == ndim else np.expand_dims(a, _normalize_axis(axis, ndim))


def _shift_by_max(x, axis):
    """Return ``(shift, x - shift)``, ``shift`` the max along ``axis`` kept as a length-1 axis.

    A row whose max is not finite is not shifted (shift 0), so that ``-inf``, ``inf``
    and NaN reach ``exp`` unchanged and the row's result follows from IEEE arithmetic
    instead of from ``inf - inf``. The empty-row max is ``-inf`` (``initial``).
    """
    shift = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    shift[~np.isfinite(shift)] = 0
    # x <= shift, so an overflow can only round to -inf, which exp maps to the exact 0.
    with np.errstate(over="ignore"):
        return shift, x - shift


def logsumexp(x, axis=-1, keepdims=False):
    """Log of the sum of exponentials, ``log(sum(exp(x), axis))``, without overflow.

    Parameters
    ----------
    x : array_like
        Input of any shape.
    axis : int, tuple of int or None, default=-1
        Axis or axes to reduce; ``None`` reduces all of them.
    keepdims : bool, default=False
        Keep the reduced axes with length 1, so the result broadcasts against ``x``.

    Returns
    -------
    lse : ndarray or scalar
        ``x``'s shape without ``axis`` (with it at length 1 if ``keepdims``), in
        ``x``'s floating dtype. A row of all ``-inf`` (or an empty row) gives
        ``-inf``, a row containing ``+inf`` and no NaN gives ``+inf``, NaN gives NaN,
        as in ``scipy.special.logsumexp``.

    Notes
    -----
    With ``m = max(x)``, ``log(sum(exp(x))) = m + log(sum(exp(x - m)))``: every
    ``exp(x - m)`` lies in ``[0, 1]`` and the largest is 1, so the sum lies in
    ``[1, n]`` and neither overflows nor underflows to zero [1]_. Its gradient is the
    softmax, see :func:`logsumexp_backward`.

    References
    ----------
    .. [1] P. Blanchard, D. J. Higham and N. J. Higham, "Accurately computing the
       log-sum-exp and softmax functions", IMA J. Numer. Anal. 41(4), 2021.

    Examples
    --------
    The naive formula overflows to ``inf`` where the answer is ``1000 + log 2``:

    >>> import numpy as np
    >>> with np.errstate(over="ignore"):
    ...     float(np.log(np.sum(np.exp([1000.0, 1000.0]))))
    inf
    >>> float(logsumexp([1000.0, 1000.0]))
    1000.6931471805599
    """
    x = _as_float(x)
    shift, shifted = _shift_by_max(x, axis)
    sum_exp = np.sum(np.exp(shifted), axis=axis, keepdims=True)
    # An all -inf row sums to 0, and log(0) = -inf is its logsumexp.
    with np.errstate(divide="ignore"):
        lse = np.log(sum_exp) + shift
    return lse if keepdims else np.squeeze(lse, axis=_normalize_axis(axis, x.ndim))[()]


def logsumexp_backward(dy, x, lse, axis=-1):
    """Vector-Jacobian product of :func:`logsumexp`: ``dx = dy * softmax(x)``.

    The derivative is ``d lse / d x_j = exp(x_j - lse) = softmax(x)_j``, computed here
    from the forward output ``lse`` without another reduction.

    Parameters
    ----------
    dy : array_like
        Upstream gradient, shaped like ``lse``.
    x : ndarray
        The forward input.
    lse : array_like
        The forward output ``logsumexp(x, axis, keepdims)``. Both ``dy`` and ``lse``
        may have the reduced axis removed (``keepdims=False``) or kept at length 1:
        the axis is re-inserted when their ``ndim`` is smaller than ``x.ndim``.
    axis : int, tuple of int or None, default=-1
        The ``axis`` given to the forward.

    Returns
    -------
    dx : ndarray, shaped like ``x``
        Entries with ``x = -inf`` get gradient 0.
    """
    x = _as_float(x)
    dy = _expand_reduced(dy, axis, x.ndim)
    lse = _expand_reduced(lse, axis, x.ndim)
    return dy * np.exp(x - lse)


def softmax(x, axis=-1):
    """Softmax ``exp(x) / sum(exp(x), axis)``, shifted by the max so nothing overflows.

    Parameters
    ----------
    x : array_like
        Logits of any shape.
    axis : int, tuple of int or None, default=-1
        Axis or axes along which the result sums to 1.

    Returns
    -------
    y : ndarray, shaped like ``x``
        In ``x``'s floating dtype. A row whose max is ``+inf`` or ``-inf`` (all
        entries ``-inf``) is NaN throughout, with NumPy's invalid-value warning, as in
        ``scipy.special.softmax``: such a row has no defined distribution.

    Notes
    -----
    Softmax is invariant to adding a constant to a row, so subtracting the row max
    changes nothing mathematically, while it makes the largest exponential exactly 1:
    the sum cannot overflow or underflow to 0. Softmax is the gradient of
    :func:`logsumexp`. For probabilities in log space use :func:`log_softmax`, never
    ``np.log(softmax(x))``, which turns underflowed probabilities into ``-inf``.

    Examples
    --------
    The naive formula divides ``inf`` by ``inf``:

    >>> import numpy as np
    >>> with np.errstate(over="ignore", invalid="ignore"):
    ...     e = np.exp([1000.0, 0.0])
    ...     (e / e.sum()).tolist()
    [nan, 0.0]
    >>> softmax([1000.0, 0.0]).tolist()
    [1.0, 0.0]
    """
    x = _as_float(x)
    x_max = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    # x <= x_max, so an overflow can only round to -inf, which exp maps to the exact 0.
    with np.errstate(over="ignore"):
        shifted = x - x_max
    exp_shifted = np.exp(shifted)
    return exp_shifted / np.sum(exp_shifted, axis=axis, keepdims=True)


def softmax_backward(dy, y, axis=-1):
    """Vector-Jacobian product of :func:`softmax`, from its output ``y``.

    The Jacobian is ``dy_i / dx_j = y_i (delta_ij - y_j)``, so
    ``dx = y * (dy - sum(dy * y, axis, keepdims=True))``: one product and one
    reduction, with no ``(n, n)`` Jacobian built per row.

    Parameters
    ----------
    dy : array_like, shaped like ``y``
        Upstream gradient.
    y : ndarray
        The forward output ``softmax(x, axis)``.
    axis : int, tuple of int or None, default=-1
        The ``axis`` given to the forward.

    Returns
    -------
    dx : ndarray, shaped like ``y``
    """
    y = np.asarray(y)
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    """Log of the softmax, ``x - logsumexp(x, axis)``, accurate for any logits.

    Parameters
    ----------
    x : array_like
        Logits of any shape.
    axis : int, tuple of int or None, default=-1
        Axis or axes along which ``exp`` of the result sums to 1.

    Returns
    -------
    log_y : ndarray, shaped like ``x``
        In ``x``'s floating dtype; always ``<= 0``. Entries ``-inf`` stay ``-inf``.
        As in ``scipy.special.log_softmax``, a row of all ``-inf`` is NaN, and in a
        row containing ``+inf`` the ``+inf`` entries are NaN and the finite ones
        ``-inf``; NumPy warns about the NaN.

    Notes
    -----
    Computed as ``(x - m) - log(sum(exp(x - m)))`` with ``m`` the row max. Forming
    ``x - m`` first keeps full precision for large ``|x|``: subtracting a rounded
    ``logsumexp`` from ``x`` directly would lose about ``|x| * 1e-16``.

    Examples
    --------
    Log of the naive softmax gives ``-inf`` where the answer is ``-2000``:

    >>> import numpy as np
    >>> with np.errstate(divide="ignore"):
    ...     np.log(softmax([1000.0, -1000.0])).tolist()
    [0.0, -inf]
    >>> log_softmax([1000.0, -1000.0]).tolist()
    [0.0, -2000.0]
    """
    x = _as_float(x)
    _, shifted = _shift_by_max(x, axis)
    sum_exp = np.sum(np.exp(shifted), axis=axis, keepdims=True)
    # Only an all -inf row sums to 0; its result is NaN either way, and the
    # subtraction below warns about that.
    with np.errstate(divide="ignore"):
        log_sum_exp = np.log(sum_exp)
    return shifted - log_sum_exp


def log_softmax_backward(dy, log_y, axis=-1):
    """Vector-Jacobian product of :func:`log_softmax`, from its output ``log_y``.

    The Jacobian is ``d log_y_i / d x_j = delta_ij - y_j`` with ``y = exp(log_y)``, so
    ``dx = dy - exp(log_y) * sum(dy, axis, keepdims=True)``.

    Parameters
    ----------
    dy : array_like, shaped like ``log_y``
        Upstream gradient.
    log_y : ndarray
        The forward output ``log_softmax(x, axis)``.
    axis : int, tuple of int or None, default=-1
        The ``axis`` given to the forward.

    Returns
    -------
    dx : ndarray, shaped like ``log_y``
    """
    log_y = np.asarray(log_y)
    return dy - np.exp(log_y) * np.sum(dy, axis=axis, keepdims=True)


def _neg_sum_p_log_p(log_p, axis):
    """``-sum(p * log_p, axis)`` with ``p = exp(log_p)`` and the term 0 wherever ``p = 0``."""
    p = np.exp(log_p)
    # 0 * log 0 = 0: an entry with probability 0 (log_p = -inf) contributes nothing.
    # NaN rows keep their NaN because NaN != 0.
    p_log_p = np.multiply(p, log_p, out=np.zeros_like(p), where=p != 0)
    # Every term is <= 0; adding 0.0 makes a one-hot row's -0.0 a plain 0.0.
    return -np.sum(p_log_p, axis=axis) + 0.0


def entropy(logits, axis=-1):
    """Shannon entropy (nats) of ``softmax(logits, axis)``, computed in log space.

    Parameters
    ----------
    logits : array_like
        Unnormalised log-probabilities of any shape; ``-inf`` marks probability 0.
    axis : int, tuple of int or None, default=-1
        Axis or axes holding one distribution.

    Returns
    -------
    h : ndarray or scalar
        ``logits``' shape without ``axis``, in its floating dtype; in
        ``[0, log(size along axis)]``. Exactly 0 for one-hot-like rows such as
        ``[0, -inf]`` or ``[1e4, 0]``.

    Notes
    -----
    ``H = -sum_j p_j log p_j`` with ``log p = log_softmax(logits)`` and
    ``p = exp(log p)``; terms with ``p_j = 0`` are 0 (the limit of ``p log p``), so a
    ``-inf`` logit never produces ``0 * -inf = NaN``. Taking ``log p`` from
    :func:`log_softmax` instead of ``np.log(softmax(x))`` keeps the small terms
    ``p_j log p_j`` accurate when ``p_j`` is tiny.

    Examples
    --------
    The probability-space formula returns NaN for a confident row:

    >>> import numpy as np
    >>> with np.errstate(divide="ignore", invalid="ignore"):
    ...     p = softmax([1e4, 0.0])
    ...     float(-np.sum(p * np.log(p)))
    nan
    >>> float(entropy([1e4, 0.0]))
    0.0
    """
    return _neg_sum_p_log_p(log_softmax(logits, axis=axis), axis)


def entropy_backward(dh, log_p, h, axis=-1):
    """Vector-Jacobian product of :func:`entropy` with respect to the logits.

    The derivative is ``dH / dx_j = -p_j (log p_j + H)``: from
    ``H = -sum_i p_i log p_i`` and ``dp_i / dx_j = p_i (delta_ij - p_j)``. Entries
    with ``p_j = 0`` (a ``-inf`` logit) get gradient 0.

    Parameters
    ----------
    dh : array_like
        Upstream gradient, shaped like ``h``.
    log_p : ndarray
        ``log_softmax(logits, axis)``, shaped like the logits.
    h : array_like
        The forward output ``entropy(logits, axis)``.
    axis : int, tuple of int or None, default=-1
        The ``axis`` given to the forward.

    Returns
    -------
    dlogits : ndarray, shaped like ``log_p``
    """
    log_p = np.asarray(log_p)
    dh = _expand_reduced(dh, axis, log_p.ndim)
    h = _expand_reduced(h, axis, log_p.ndim)
    p = np.exp(log_p)
    # p = 0 makes p * (log p + H) = 0 * -inf; its limit, and the derivative, is 0.
    p_times_surprise = np.multiply(p, log_p + h, out=np.zeros_like(p), where=p != 0)
    return -dh * p_times_surprise


def entropy_from_probs(p, axis=-1):
    """Shannon entropy (nats) ``-sum(p log p, axis)`` of given probabilities.

    Parameters
    ----------
    p : array_like
        Probabilities of any shape, each distribution along ``axis`` (not checked
        to sum to 1).
    axis : int, tuple of int or None, default=-1
        Axis or axes holding one distribution.

    Returns
    -------
    h : ndarray or scalar
        ``p``'s shape without ``axis``. A negative entry makes it ``-inf``.

    Notes
    -----
    Uses the convention ``0 log 0 = 0`` (the limit of ``p log p`` as ``p -> 0``)
    through ``scipy.special.entr``. Prefer :func:`entropy` when logits are
    available: probabilities that underflowed to 0 have lost their (tiny)
    contribution, which log space keeps.

    Examples
    --------
    ``p * np.log(p)`` is NaN at ``p = 0``:

    >>> import numpy as np
    >>> with np.errstate(divide="ignore", invalid="ignore"):
    ...     float(-np.sum(np.array([1.0, 0.0]) * np.log([1.0, 0.0])))
    nan
    >>> float(entropy_from_probs([1.0, 0.0]))
    0.0
    """
    return np.sum(entr(_as_float(p)), axis=axis)
