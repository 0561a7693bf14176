"""Shared by the gradient tests of functional and losses: the awkward logits and the comparison."""

import numpy as np
from numpy.testing import assert_allclose

from npclust.gradcheck import numerical_gradient
from npclust.gradcheck.cases import FINITE_LOGIT_KINDS

# Every entry is perturbed, so the kinds without -inf.
LOGIT_KINDS = list(FINITE_LOGIT_KINDS)


def assert_matches_numerical(f, x, analytic, indices=None):
    """Compare an analytic gradient with npclust.gradcheck's central differences."""
    numerical = numerical_gradient(f, x, indices=indices)
    if indices is not None:
        numerical = numerical.reshape(-1)[indices]
        analytic = np.asarray(analytic).reshape(-1)[indices]
    assert_allclose(analytic, numerical, rtol=1e-5, atol=1e-7)
