"""The awkward inputs every gradient check uses: where hand-written gradients usually break.

Shared by :mod:`npclust.gradcheck.suite` (``npclust gradcheck``) and the test suite, so
both probe the same cases.
"""

import numpy as np

__all__ = ["LOGIT_KINDS", "FINITE_LOGIT_KINDS", "awkward_logits", "away_from_zero"]

LOGIT_KINDS = ("random", "logits +-30", "tied logits", "near one-hot", "-inf entries")
# Central differences cannot probe a -inf entry; checks that perturb every entry use these.
FINITE_LOGIT_KINDS = LOGIT_KINDS[:-1]


def awkward_logits(kind, shape, rng):
    """Float64 logits of one of :data:`LOGIT_KINDS`, of ``shape`` (at least 2-D for ``-inf``).

    Parameters
    ----------
    kind : str
        ``"random"``: normal, scale 2. ``"logits +-30"``: each entry near -30 or +30,
        so probabilities span e^-60 while gradients stay far above the noise of
        central differences. ``"tied logits"``: rows of 0s and 1s that mostly tie
        for the maximum, the first row tied throughout (the uniform distribution,
        where the entropy gradient vanishes). ``"near one-hot"``: one logit in each
        row raised by 25. ``"-inf entries"``: one impossible class per row (a
        probability of exactly 0), never the whole row.
    shape : tuple of int
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of float64
    """
    if kind == "random":
        return rng.normal(scale=2.0, size=shape)
    if kind == "logits +-30":
        return rng.choice([-30.0, 30.0], size=shape) + rng.normal(scale=0.5, size=shape)
    if kind == "tied logits":
        logits = rng.integers(0, 2, size=shape).astype(np.float64)
        logits[0] = 1.0
        return logits
    if kind == "near one-hot":
        logits = rng.normal(scale=0.5, size=shape)
        # Every (k+1)-th entry of the flattened array: one spike per row of any shape.
        logits.reshape(-1)[:: shape[-1] + 1] += 25.0
        return logits
    if kind == "-inf entries":
        logits = rng.normal(scale=2.0, size=shape)
        logits[np.arange(shape[0]), rng.integers(0, shape[1], size=shape[0])] = -np.inf
        return logits
    raise ValueError(f"unknown kind of logits {kind!r}; known kinds are {LOGIT_KINDS}")


def away_from_zero(x, margin=0.05):
    """``x`` with every entry moved at least ``margin`` from 0, keeping its sign.

    Piecewise activations have a kink at 0, where the derivative is a convention and
    central differences average the two sides.

    Parameters
    ----------
    x : ndarray
    margin : float, default=0.05

    Returns
    -------
    ndarray
    """
    return np.where(x < 0, -1.0, 1.0) * (margin + np.abs(x))
