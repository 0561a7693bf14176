"""End to end: data that only a correctly implemented method clusters right.

Two interleaved half-moons: k-means, and IMSAT without its VAT term, cut both moons
in half (each is a compact, confident, balanced split), while IMSAT with VAT, whose
penalty forbids a boundary through a dense region, finds the moons. The margins
were measured (10 seeds of the estimator, this data): with VAT the adjusted Rand
index was 1.000 for every seed, without VAT at most 0.59, k-means 0.52. Planted by
hand, each of these bugs failed the VAT test: the restart with the highest objective
kept, the adversarial direction not normalised, the perturbation without its radius.
(Swapping the weight ``lam`` between the information and VAT terms still finds the
moons here; ``test_objectives.py`` catches it.)
"""

import warnings

import numpy as np
import pytest

from npclust.cluster import IMSAT, KMeans
from npclust.metrics import adjusted_rand_score


def two_moons(n_samples, noise, rng):
    """Two interleaved half circles (the usual "moons"), standardised, and their labels."""
    half = n_samples // 2
    angles = rng.uniform(0, np.pi, n_samples)
    upper = np.c_[np.cos(angles[:half]), np.sin(angles[:half])]
    lower = np.c_[1 - np.cos(angles[half:]), 0.5 - np.sin(angles[half:])]
    X = np.r_[upper, lower] + noise * rng.standard_normal((n_samples, 2))
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X.astype(np.float32), np.r_[np.zeros(half, int), np.ones(n_samples - half, int)]


@pytest.fixture(scope="module")
def moons():
    return two_moons(400, 0.05, np.random.default_rng(0))


def imsat(vat, seed):
    # A VAT radius of twice the 10th-neighbour distance spans the gap between the
    # moons' tips and the other moon; the paper's 0.25 is made for images.
    # Restarts of all 60 epochs: with 15-epoch restarts and the kept one trained on,
    # seed 0 of 10 kept a restart that had cut the moons (ARI 0.58).
    return IMSAT(n_clusters=2, hidden_dims=(64, 64), epochs=60, restart_epochs=60, batch_size=100,
                 eps_scale=2.0, vat=vat, n_init=5, random_state=seed)


def test_k_means_and_imsat_without_vat_cut_the_moons(moons):
    X, y = moons
    assert adjusted_rand_score(y, KMeans(n_clusters=2, random_state=0).fit(X).labels_) < 0.6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert adjusted_rand_score(y, imsat(vat=False, seed=0).fit(X).labels_) < 0.7


@pytest.mark.parametrize("seed", [0, 1])
def test_imsat_with_vat_finds_the_moons(moons, seed):
    X, y = moons
    assert adjusted_rand_score(y, imsat(vat=True, seed=seed).fit(X).labels_) > 0.95
