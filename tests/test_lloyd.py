"""k-means internals against plain formulas: blocked assignment, Lloyd fixed points, refills."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from npclust import lloyd
from npclust.lloyd import kmeans


def _plain_assignment(X, centers):
    """Labels, squared distances and per-cluster sums, the slow obvious way."""
    distances = cdist(X, centers, "sqeuclidean")
    labels = distances.argmin(axis=1)
    sums = np.zeros_like(centers)
    np.add.at(sums, labels, X)
    return labels, distances[np.arange(len(X)), labels], sums


@pytest.mark.parametrize("block_bytes", [8 * 5, 8 * 5 * 7, 4 << 20])
def test_blocked_assignment_matches_the_plain_formulas(block_bytes, monkeypatch):
    monkeypatch.setattr(lloyd, "_ASSIGN_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((103, 5))
    centers = rng.standard_normal((4, 5))
    labels, closest, sums = lloyd._assign(X, centers, np.einsum("ij,ij->i", X, X))
    expected_labels, expected_closest, expected_sums = _plain_assignment(X, centers)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(closest, expected_closest, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sums, expected_sums, rtol=1e-12, atol=1e-12)


def test_converged_centers_are_the_means_of_their_points():
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.standard_normal((60, 3)) + shift for shift in (0, 8, 16)])
    centers, labels, inertia, _ = kmeans(X, 3, n_init=2, tol=0.0, random_state=0)
    for cluster in range(3):
        np.testing.assert_allclose(centers[cluster], X[labels == cluster].mean(axis=0),
                                   rtol=1e-12, atol=1e-12)
    distances = cdist(X, centers, "sqeuclidean")
    np.testing.assert_array_equal(labels, distances.argmin(axis=1))
    np.testing.assert_allclose(inertia, distances.min(axis=1).sum(), rtol=1e-12)


def test_an_emptied_cluster_is_refilled_and_the_sums_follow(monkeypatch):
    monkeypatch.setattr(lloyd, "_ASSIGN_BLOCK_BYTES", 8 * 2 * 16)
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.standard_normal((40, 2)), rng.standard_normal((40, 2)) + 10])
    # The third seed is far from every point: its cluster starts empty.
    seeds = np.array([[0.0, 0.0], [10.0, 10.0], [1e3, 1e3]])
    centers, labels, _, _ = lloyd._lloyd(
        X, seeds, np.einsum("ij,ij->i", X, X), max_iter=50, tol=0.0)
    assert np.bincount(labels, minlength=3).min() >= 1
    for cluster in range(3):
        np.testing.assert_allclose(centers[cluster], X[labels == cluster].mean(axis=0),
                                   rtol=1e-12, atol=1e-12)


def test_one_iteration_with_a_refill_moves_the_point_and_its_sum(monkeypatch):
    monkeypatch.setattr(lloyd, "_ASSIGN_BLOCK_BYTES", 8 * 2 * 16)
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.standard_normal((40, 2)), rng.standard_normal((40, 2)) + 10])
    seeds = np.array([[0.0, 0.0], [10.0, 10.0], [1e3, 1e3]])
    labels, closest, _ = _plain_assignment(X, seeds)
    counts = np.bincount(labels, minlength=3)
    assert counts[2] == 0
    lloyd._fill_empty_clusters(closest, labels, counts)
    expected = np.array([X[labels == cluster].mean(axis=0) for cluster in range(3)])
    centers, _, _, n_iter = lloyd._lloyd(
        X, seeds, np.einsum("ij,ij->i", X, X), max_iter=1, tol=0.0)
    assert n_iter == 1
    np.testing.assert_allclose(centers, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 3), (5, 1), (1000, 7)])
def test_mean_feature_variance_matches_numpy(shape, monkeypatch):
    monkeypatch.setattr(lloyd, "_ASSIGN_BLOCK_BYTES", 8 * 7 * 33)
    X = np.random.default_rng(4).standard_normal(shape) * 3 + 100
    np.testing.assert_allclose(lloyd._mean_feature_variance(X),
                               np.mean(np.var(X, axis=0)), rtol=1e-12, atol=1e-14)
