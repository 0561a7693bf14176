"""Tests for npclust.neighbors (kth_neighbor_distance, nearest_neighbors) against scipy's cdist."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from npclust import neighbors
from npclust.neighbors import kth_neighbor_distance, nearest_neighbors


def sorted_other_distances(X):
    """Row i: distances from X[i] to every other row, ascending (float64 reference)."""
    distances = cdist(X, X)
    np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)[:, :-1]


def data_with_duplicates_and_ties(n_samples, n_features, rng):
    """Gaussian points, a block of exact duplicates, and integer grid points (ties)."""
    X = rng.standard_normal((n_samples, n_features))
    quarter = n_samples // 4
    X[:quarter] = X[quarter:2 * quarter]
    X[n_samples - quarter:] = rng.integers(0, 3, size=(quarter, n_features))
    return X


# Chunks of one row on 400 samples walk the same path as on 60, 7 times slower.
@pytest.mark.parametrize("n_samples, n_features, chunk_size",
                         [(n, d, chunk) for n, d in [(2, 1), (9, 2), (60, 3), (400, 7)]
                          for chunk in (None, 1, 13) if not (n == 400 and chunk == 1)])
def test_float64_matches_cdist_for_every_k(n_samples, n_features, chunk_size):
    rng = np.random.default_rng(n_samples)
    X = data_with_duplicates_and_ties(n_samples, n_features, rng)
    expected = sorted_other_distances(X)
    reference = cdist(X, X)
    ks = sorted({1, 2, n_samples // 3, n_samples // 2, n_samples - 1} & set(range(1, n_samples)))
    for k in ks:
        distances, indices = kth_neighbor_distance(
            X, k, chunk_size=chunk_size, return_indices=True
        )
        assert distances.dtype == np.float64 and distances.shape == (n_samples,)
        np.testing.assert_allclose(distances, expected[:, k - 1], rtol=0, atol=1e-9)
        assert (indices != np.arange(n_samples)).all()
        np.testing.assert_allclose(
            reference[np.arange(n_samples), indices], distances, rtol=0, atol=1e-9
        )


def test_duplicates_are_neighbours_at_distance_zero_but_self_is_not():
    X = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [4.0, 6.0]])
    np.testing.assert_array_equal(kth_neighbor_distance(X, 1), [0.0, 0.0, 0.0, 5.0])
    np.testing.assert_array_equal(kth_neighbor_distance(X, 2), [0.0, 0.0, 0.0, 5.0])
    np.testing.assert_array_equal(kth_neighbor_distance(X, 3), [5.0, 5.0, 5.0, 5.0])


def test_large_offset_duplicates_are_exactly_zero():
    # ||x||^2 - 2 x.y + ||y||^2 cancels catastrophically here; the direct recomputation
    # of the selected neighbour's distance does not.
    rng = np.random.default_rng(0)
    X = 1e4 + rng.standard_normal((50, 8))
    X[25:] = X[:25]
    np.testing.assert_array_equal(kth_neighbor_distance(X, 1), np.zeros(50))
    X32 = X.astype(np.float32)
    np.testing.assert_array_equal(kth_neighbor_distance(X32, 1), np.zeros(50, np.float32))


@pytest.mark.parametrize("k", [1, 10, 299])
def test_float32_within_relative_tolerance(k):
    rng = np.random.default_rng(1)
    X = rng.random((300, 64))
    expected = sorted_other_distances(X)[:, k - 1]
    distances = kth_neighbor_distance(X.astype(np.float32), k, chunk_size=37)
    assert distances.dtype == np.float32
    np.testing.assert_allclose(distances, expected, rtol=1e-4)


def test_grouped_selection_on_clustered_and_sorted_data():
    # Rows sorted by cluster: the interleaved column groups must still hold the k
    # nearest neighbours, which all sit in one contiguous stretch of columns.
    rng = np.random.default_rng(2)
    X = np.repeat(rng.standard_normal((5, 4)) * 50, 200, axis=0)
    X += rng.standard_normal(X.shape)
    expected = sorted_other_distances(X)
    for k in (1, 5, 10, 40):
        np.testing.assert_allclose(kth_neighbor_distance(X, k), expected[:, k - 1], atol=1e-9)


@pytest.mark.parametrize("order", ["sorted", "interleaved", "shuffled"])
@pytest.mark.parametrize("chunk_size", [7, 16, 64, None])
def test_symmetric_tiles_on_clustered_data_in_any_order(order, chunk_size):
    # Sorted: each tile's own block already holds the neighbours. Interleaved: each
    # block holds one point per cluster, so the seeds from the diagonal tiles are poor
    # and the candidates must be corrected by later tiles.
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(20), 15)
    X = 30 * rng.standard_normal((20, 5))[labels] + rng.standard_normal((300, 5))
    if order == "interleaved":
        X = X[np.argsort(np.tile(np.arange(15), 20), kind="stable")]
    elif order == "shuffled":
        X = X[rng.permutation(300)]
    expected = sorted_other_distances(X)
    for k in (1, 3, 14, 15, 64):
        np.testing.assert_allclose(
            kth_neighbor_distance(X, k, chunk_size=chunk_size), expected[:, k - 1], atol=1e-9)


@pytest.mark.parametrize("k", [1, 10, 64])
def test_symmetric_and_row_chunk_searches_agree(k, monkeypatch):
    from npclust import neighbors

    rng = np.random.default_rng(5)
    X = data_with_duplicates_and_ties(500, 6, rng)
    symmetric = kth_neighbor_distance(X, k, chunk_size=96)
    monkeypatch.setattr(neighbors, "_MAX_K_SYMMETRIC", 0)
    row_chunks = kth_neighbor_distance(X, k, chunk_size=96)
    np.testing.assert_array_equal(symmetric, row_chunks)
    np.testing.assert_allclose(symmetric, sorted_other_distances(X)[:, k - 1], atol=1e-9)


def test_k_just_above_the_symmetric_limit():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((200, 3))
    expected = sorted_other_distances(X)
    for k in (64, 65):
        np.testing.assert_allclose(kth_neighbor_distance(X, k, chunk_size=50),
                                   expected[:, k - 1], atol=1e-9)


def test_memory_is_bounded_by_the_tiles_not_the_data():
    # No centred copy of X: blocks are centred as the tiles use them.
    import tracemalloc

    rng = np.random.default_rng(7)
    X = rng.random((3000, 2000), dtype=np.float32)
    tracemalloc.start()
    try:
        kth_neighbor_distance(X, 10, chunk_size=256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * X.nbytes, f"peak {peak / 2**20:.1f} MiB for {X.nbytes / 2**20:.1f} MiB data"


def test_accepts_lists_and_integers_as_float32():
    distances = kth_neighbor_distance([[0, 0], [3, 4], [6, 8]], 1)
    assert distances.dtype == np.float32
    np.testing.assert_array_equal(distances, [5.0, 5.0, 5.0])


def test_input_is_not_modified():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 3))
    copy = X.copy()
    kth_neighbor_distance(X, 4, chunk_size=7)
    np.testing.assert_array_equal(X, copy)


@pytest.mark.parametrize("k", [0, -1, 5, 6])
def test_k_out_of_range_names_k_and_n(k):
    with pytest.raises(ValueError, match=r"k must be in \[1, n - 1\] = \[1, 4\].*n = 5"):
        kth_neighbor_distance(np.zeros((5, 2)), k)


def test_single_sample_has_no_neighbour():
    with pytest.raises(ValueError, match=r"n = 1"):
        kth_neighbor_distance(np.zeros((1, 2)), 1)


@pytest.mark.parametrize("k", [1.0, 2.5, True, "3"])
def test_non_integer_k_is_a_type_error(k):
    with pytest.raises(TypeError, match="k must be an integer"):
        kth_neighbor_distance(np.zeros((5, 2)), k)


def test_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size"):
        kth_neighbor_distance(np.zeros((5, 2)), 1, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size"):
        kth_neighbor_distance(np.zeros((5, 2)), 1, chunk_size=2.0)


@pytest.mark.parametrize("X, message", [
    (np.zeros(5), "2-D"),
    (np.array([[0.0, np.nan], [1.0, 1.0]]), "NaN"),
])
def test_bad_input(X, message):
    with pytest.raises(ValueError, match=message):
        kth_neighbor_distance(X, 1)


# ------------------------------------------------------------ nearest_neighbors
def _cdist_neighbours(queries, reference, k):
    return np.argsort(cdist(queries, reference), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("query_rows, block_bytes", [(1024, 64 << 20), (7, 16 * 7 * 5)])
@pytest.mark.parametrize("k", [1, 4, 60])
def test_nearest_neighbors_matches_cdist(monkeypatch, query_rows, block_bytes, k):
    # Small blocks (7 queries against 5 reference rows) exercise the merging of blocks.
    monkeypatch.setattr(neighbors, "_QUERY_ROWS", query_rows)
    monkeypatch.setattr(neighbors, "_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(k)
    reference = rng.standard_normal((60, 3))
    queries = np.concatenate([rng.standard_normal((25, 3)), reference[:5] + 1e-9])
    np.testing.assert_array_equal(nearest_neighbors(queries, reference, k),
                                  _cdist_neighbours(queries, reference, k))


def test_nearest_neighbors_puts_equal_distances_in_index_order():
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(nearest_neighbors([[0.0, 0.0]], reference, 5), [[4, 0, 1, 2, 3]])
    # A query on a reference row finds it first, duplicates in index order.
    np.testing.assert_array_equal(nearest_neighbors(reference[[2, 2]], reference[[0, 2, 2]], 3),
                                  [[1, 2, 0], [1, 2, 0]])


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("exponent", [-120, 0, 120])
def test_nearest_neighbors_at_any_scale(dtype, exponent):
    # float32 squared distances overflow near 1e19 and underflow near 1e-19; scaled by
    # a power of two, the data rank exactly as at unit scale.
    rng = np.random.default_rng(5)
    reference, queries = rng.standard_normal((50, 4)), rng.standard_normal((20, 4))
    expected = _cdist_neighbours(queries, reference, 6)
    scaled = [np.ldexp(X, exponent).astype(dtype) for X in (queries, reference)]
    np.testing.assert_array_equal(nearest_neighbors(*scaled, 6), expected)


def test_nearest_neighbors_of_offset_data():
    # Features near 1e6 apart by 1e-3: centring on the reference mean keeps them rankable.
    rng = np.random.default_rng(6)
    reference, queries = rng.standard_normal((40, 3)), rng.standard_normal((10, 3))
    expected = _cdist_neighbours(queries, reference, 5)
    np.testing.assert_array_equal(nearest_neighbors(queries * 1e-3 + 1e6, reference * 1e-3 + 1e6, 5),
                                  expected)


@pytest.mark.parametrize("call, error, message", [
    (lambda: nearest_neighbors(np.zeros((2, 3)), np.zeros((5, 2)), 1), ValueError,
     "queries have 3 features and reference has 2"),
    (lambda: nearest_neighbors(np.zeros((2, 2)), np.zeros((5, 2)), 6), ValueError,
     r"n_neighbors must be in \[1, 5\]"),
    (lambda: nearest_neighbors(np.zeros((2, 2)), np.zeros((5, 2)), 0), ValueError, "n_neighbors"),
    (lambda: nearest_neighbors(np.zeros((2, 2)), np.zeros((5, 2)), 1.0), TypeError, "integer"),
    (lambda: nearest_neighbors(np.zeros(2), np.zeros((5, 2)), 1), ValueError, "queries must be 2-D"),
    (lambda: nearest_neighbors(np.zeros((2, 2)), [[np.inf, 0.0]], 1), ValueError,
     "reference contains NaN or infinity"),
])
def test_nearest_neighbors_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype, exponent", [
    (np.float32, -83), (np.float32, -40), (np.float32, 60), (np.float32, 100),
    (np.float64, -600), (np.float64, 600)])
def test_kth_neighbor_distance_at_any_scale(dtype, exponent):
    # float32 squared norms underflow near 1e-19 (every distance came out 0 at 1e-25) and
    # overflow near 1e19; a power-of-two scale is exact, so the distances are the unit
    # scale's to the last bit, scaled.
    X = np.random.default_rng(6).standard_normal((200, 5)).astype(dtype)
    distances, indices = kth_neighbor_distance(X, 3, return_indices=True)
    scaled, scaled_indices = kth_neighbor_distance(np.ldexp(X, exponent), 3, return_indices=True)
    assert scaled.dtype == dtype
    np.testing.assert_array_equal(scaled_indices, indices)
    np.testing.assert_array_equal(scaled, np.ldexp(distances, exponent))


def test_kth_neighbor_distance_beyond_the_dtype_is_a_clear_error():
    X = np.array([[0.0], [3e38], [-3e38]], dtype=np.float32)
    with pytest.raises(ValueError, match="too large for distances in float32.*use float64"):
        kth_neighbor_distance(X, 2)
    np.testing.assert_allclose(kth_neighbor_distance(X.astype(np.float64), 2), [3e38, 6e38, 6e38],
                               rtol=1e-7)
