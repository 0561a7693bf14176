"""Turn the ``random_state`` argument of every npclust function into a Generator.

All randomness in npclust flows through :class:`numpy.random.Generator`; this module is
the single place where the user-facing ``random_state`` argument is interpreted, so every
estimator and data generator accepts the same three forms and fails the same way.
"""

import numbers

import numpy as np

__all__ = ["check_random_state"]


def check_random_state(seed):
    """Return a :class:`numpy.random.Generator` for a ``random_state`` argument.

    Parameters
    ----------
    seed : None, int or numpy.random.Generator
        ``None`` gives a fresh generator seeded from the operating system's entropy;
        a non-negative int (Python or NumPy integer) gives ``np.random.default_rng(seed)``,
        so the same int always reproduces the same stream; a Generator is returned
        as is (not copied), so drawing from the result advances the caller's generator.

    Returns
    -------
    rng : numpy.random.Generator

    Raises
    ------
    TypeError
        If `seed` is of any other type. ``bool`` is rejected although it is an int
        subclass, because ``random_state=True`` is almost certainly a mistake.
        The legacy ``numpy.random.RandomState`` is rejected too: its streams differ
        from Generator's, so accepting it would silently change results.
    ValueError
        If `seed` is a negative integer (``default_rng`` cannot use it).

    Examples
    --------
    >>> from npclust.random import check_random_state
    >>> a = check_random_state(0).standard_normal(3)
    >>> b = check_random_state(0).standard_normal(3)
    >>> bool((a == b).all())
    True
    """
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            "random_state must be None, a non-negative int or a numpy.random.Generator, "
            f"got {type(seed).__name__}: {seed!r}"
        )
    if seed < 0:
        raise ValueError(f"random_state must be a non-negative int, got {seed}")
    return np.random.default_rng(int(seed))
