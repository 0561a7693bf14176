"""Exact rescaling by powers of two, for data whose squared distances would leave the range.

Squared Euclidean distances of float32 data overflow near 1e19 and underflow near
1e-19, and float64's limits lie beyond 1e150 and 1e-150. Multiplying the data by a
power of two is exact, and every later rounding scales with it: an algorithm run on
the scaled data makes bit for bit the choices it would make in exact range, and its
distances scale back exactly. k-means, the neighbour searches and spectral clustering
all rescale this way.
"""

import numpy as np

from .validation import largest_magnitude

__all__ = ["power_of_two_scale", "SQUARED_DISTANCE_RANGE"]

# Largest absolute values within which squared distances (sums of d squares, d up to
# millions) stay normal numbers of the dtype: the data are then used as they are.
SQUARED_DISTANCE_RANGE = {np.dtype(np.float32): (2.0 ** -32, 2.0 ** 32),
                          np.dtype(np.float64): (2.0 ** -256, 2.0 ** 256)}

# A float64 factor cannot exceed 2**1023; data whose largest value is below 2**-1000
# (subnormal) are scaled only this far.
_MAX_EXPONENT = 1000


def power_of_two_scale(*arrays, safe_range=None):
    """The power of two that brings the largest absolute value of ``arrays`` into [1, 2).

    Parameters
    ----------
    *arrays : ndarray
        Floating-point arrays; empty ones are ignored.
    safe_range : tuple of two floats or None, default=None
        ``(low, high)``: when the largest absolute value lies within it, the data need no
        rescaling and 1.0 is returned. None rescales whenever the value is outside [1, 2).

    Returns
    -------
    float
        A power of two; 1.0 for all-zero (or empty) arrays. For subnormal data it is at
        most the largest power of two of the arrays' dtype (``2**127`` for float32), so
        that the factor itself is a number of that dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from npclust.scaling import power_of_two_scale, SQUARED_DISTANCE_RANGE
    >>> power_of_two_scale(np.array([3.0e-30, -1.0e-30]))
    6.338253001141147e+29
    >>> power_of_two_scale(np.array([5.0]), safe_range=SQUARED_DISTANCE_RANGE[np.dtype("float64")])
    1.0
    """
    largest = largest_magnitude(*arrays)
    if largest == 0.0:
        return 1.0
    if safe_range is not None and safe_range[0] <= largest <= safe_range[1]:
        return 1.0
    exponent = int(np.frexp(largest)[1]) - 1
    max_exponent = min(np.finfo(array.dtype).maxexp - 1 for array in arrays)
    return float(np.ldexp(1.0, min(-exponent, max_exponent)))
