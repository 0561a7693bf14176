"""k-means internals against plain formulas: blocked assignment and sums, greedy seeding,
Lloyd fixed points, carried sums, refills."""

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
    labels, closest, _ = lloyd._assign(X, centers, np.einsum("ij,ij->i", X, X))
    sums = lloyd._cluster_sums(X, labels, 4)
    expected_labels, expected_closest, expected_sums = _plain_assignment(X, centers)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(closest, expected_closest, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sums, expected_sums, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_carried_sums_follow_the_moved_points(dtype):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((50, 3)).astype(dtype)
    before = rng.integers(0, 4, 50)
    after = before.copy()
    moved = np.array([3, 17, 41])
    after[moved] = (before[moved] + 1 + rng.integers(0, 3, 3)) % 4
    sums = lloyd._cluster_sums(X, before, 4)
    lloyd._move_points(sums, X, moved, before[moved], after[moved])
    assert sums.dtype == np.float64
    expected = np.zeros((4, 3))
    np.add.at(expected, after, X.astype(np.float64))
    np.testing.assert_allclose(sums, expected, rtol=1e-6 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-12)


def _greedy_seeding_by_formula(X, n_clusters, rng):
    """Greedy k-means++ the slow obvious way, drawing the same random numbers."""
    n_candidates = 2 + int(np.log(n_clusters))
    centers = [X[rng.integers(len(X))]]
    closest = cdist(X, np.array(centers), "sqeuclidean").min(axis=1)
    for _ in range(1, n_clusters):
        cumulative = np.cumsum(closest)
        candidates = [int(np.sum(cumulative <= u * cumulative[-1])) for u in rng.random(n_candidates)]
        potentials = [np.minimum(closest, cdist(X, X[[c]], "sqeuclidean")[:, 0]).sum()
                      for c in candidates]
        chosen = candidates[int(np.argmin(potentials))]
        centers.append(X[chosen])
        closest = np.minimum(closest, cdist(X, X[[chosen]], "sqeuclidean")[:, 0])
    return np.array(centers)


@pytest.mark.parametrize("n_clusters", [1, 2, 5, 12])
def test_greedy_seeding_keeps_the_candidate_that_lowers_the_potential_most(n_clusters):
    X = np.random.default_rng(6).standard_normal((80, 4))
    seeds = lloyd._kmeans_plus_plus(X, n_clusters, np.einsum("ij,ij->i", X, X),
                                    np.random.default_rng(7))
    np.testing.assert_array_equal(seeds, _greedy_seeding_by_formula(X, n_clusters,
                                                                     np.random.default_rng(7)))


def test_seeding_never_picks_a_point_that_is_already_a_center():
    # Eight distinct points, each repeated: every draw must land on a new one.
    X = np.repeat(np.random.default_rng(8).standard_normal((8, 2)), 5, axis=0)
    for seed in range(20):
        seeds = lloyd._kmeans_plus_plus(X, 8, np.einsum("ij,ij->i", X, X),
                                        np.random.default_rng(seed))
        assert len(np.unique(seeds, axis=0)) == 8


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


def _plain_lloyd(X, centers):
    """Lloyd's iterations the slow obvious way, until no label changes."""
    previous = None
    for n_iter in range(1, 1000):
        labels = cdist(X, centers, "sqeuclidean").argmin(axis=1)
        if previous is not None and np.array_equal(labels, previous):
            return centers, labels, n_iter
        centers = np.array([X[labels == cluster].mean(axis=0) for cluster in range(len(centers))])
        previous = labels
    raise AssertionError("no convergence")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", range(4))
def test_lloyd_with_bounds_and_carried_sums_follows_the_plain_iterations(seed, dtype, monkeypatch):
    monkeypatch.setattr(lloyd, "_ASSIGN_BLOCK_BYTES", 8 * 3 * 40)
    rng = np.random.default_rng(seed)
    # Overlapping clusters and a bad start: many iterations, most moving few points,
    # so the bounds skip most points and the carried sums are corrected many times.
    n_clusters = 3 + 2 * seed
    # Multiples of 1/16: every cluster sum is then exact in float32 too, whatever order
    # the BLAS kernel adds in, so a float32 run can follow the float64 iterations exactly
    # (with sums rounded in float32, one kernel's centers differed by an ulp and a
    # near-tie point moved one iteration later).
    X = np.concatenate([np.round(16 * (rng.standard_normal((150, 3 + seed)) + 1.5 * shift)) / 16
                        for shift in range(n_clusters)]).astype(dtype)
    start = X[:n_clusters] + dtype(0.01)
    measured = []
    assign = lloyd._assign

    def counting_assign(rows, *args):
        measured.append(len(rows))
        return assign(rows, *args)

    monkeypatch.setattr(lloyd, "_assign", counting_assign)
    centers, labels, inertia, n_iter = lloyd._lloyd(X, start, np.einsum("ij,ij->i", X, X),
                                                    max_iter=1000, tol=-1.0)
    expected_centers, expected_labels, expected_iterations = _plain_lloyd(
        X.astype(np.float64), start.astype(np.float64))
    assert n_iter == expected_iterations > 5
    np.testing.assert_array_equal(labels, expected_labels)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(centers, expected_centers, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(inertia, cdist(X, centers, "sqeuclidean").min(axis=1).sum(),
                               rtol=tolerance)
    # The bounds spared most distance computations: far fewer rows measured than
    # one full pass per iteration.
    assert sum(measured) < 0.6 * len(X) * n_iter



@pytest.mark.filterwarnings("error")
def test_subnormal_float32_data_are_clustered_as_the_same_bits_in_range():
    # The scale for data near 2**-140 would be 2**140, which is not a float32 (inf);
    # it stops at 2**127, and the data are then clustered exactly as in range.
    X = np.random.default_rng(3).standard_normal((60, 2)) + np.repeat([[0, 0], [8, 8], [0, 8]], 20, 0)
    subnormal = np.ldexp(X, -140).astype(np.float32)
    in_range = np.ldexp(subnormal.astype(np.float64), 127).astype(np.float32)
    centers, labels, inertia, _ = kmeans(subnormal, 3, n_init=2, random_state=0)
    expected_centers, expected_labels, expected_inertia, _ = kmeans(in_range, 3, n_init=2,
                                                                   random_state=0)
    np.testing.assert_array_equal(labels, expected_labels)
    # Back at the data's scale the centres are float32 subnormals: the in-range ones, rounded.
    np.testing.assert_array_equal(
        centers, np.ldexp(expected_centers.astype(np.float64), -127).astype(np.float32))
    assert inertia == expected_inertia * 2.0 ** -254
