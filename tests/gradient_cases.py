"""Shared by the gradient tests of functional and losses: awkward logits and the comparison."""

import numpy as np
from numpy.testing import assert_allclose

from npclust.gradcheck import numerical_gradient

LOGIT_KINDS = ["benign", "large", "ties", "near_one_hot"]


def random_logits(shape, kind, rng):
    """Float64 logits of ``shape``: benign, large (+-30), tied, or near one-hot (+25 spikes)."""
    if kind == "benign":
        return rng.normal(scale=2.0, size=shape)
    if kind == "large":
        # +-30: probabilities span e^-60, gradients still far above difference noise.
        return rng.uniform(-30.0, 30.0, size=shape)
    if kind == "ties":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    if kind == "near_one_hot":
        x = rng.normal(scale=0.5, size=shape)
        # Every (k+1)-th entry of the flattened array: one large logit per row of any shape.
        x.reshape(-1)[:: shape[-1] + 1] += 25.0
        return x
    raise ValueError(kind)


def assert_matches_numerical(f, x, analytic, indices=None):
    """Compare an analytic gradient with npclust.gradcheck's central differences."""
    numerical = numerical_gradient(f, x, indices=indices)
    if indices is not None:
        numerical = numerical.reshape(-1)[indices]
        analytic = np.asarray(analytic).reshape(-1)[indices]
    assert_allclose(analytic, numerical, rtol=1e-5, atol=1e-7)
