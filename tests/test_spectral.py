"""Spectral embedding, spectral clustering and the consensus of labelings (npclust.spectral)."""

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from npclust.metrics import adjusted_rand_score
from npclust.spectral import (
    coassociation,
    coassociation_embedding,
    consensus_clustering,
    knn_affinity,
    normalized_cut,
    normalized_laplacian,
    spectral_clustering,
    spectral_embedding,
)


def blobs(rng, n_per=40, centers=((0, 0), (6, 0), (0, 6)), spread=0.5):
    X = np.concatenate([rng.normal(c, spread, (n_per, 2)) for c in centers])
    y = np.repeat(np.arange(len(centers)), n_per)
    return X, y


def random_graph(rng, n, density=0.3):
    W = rng.uniform(0.1, 1.0, (n, n)) * (rng.random((n, n)) < density)
    W = np.triu(W, 1)
    W = W + W.T
    # A ring keeps it connected.
    ring = np.arange(n)
    W[ring, (ring + 1) % n] = W[(ring + 1) % n, ring] = 0.5
    return W


def dense_laplacian(W):
    degree = W.sum(axis=1)
    inverse_sqrt = np.where(degree > 0, 1 / np.sqrt(np.where(degree > 0, degree, 1)), 0)
    return np.eye(len(W)) - inverse_sqrt[:, None] * W * inverse_sqrt[None, :]


# ------------------------------------------------------------------- the graph


def test_knn_affinity_matches_brute_force():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    k, scale = 5, 3
    W = knn_affinity(X, n_neighbors=k, scale_neighbor=scale).toarray()
    D = scipy.spatial.distance.cdist(X, X)
    np.fill_diagonal(D, np.inf)
    order = np.argsort(D, axis=1)
    sigma = D[np.arange(30), order[:, scale - 1]]
    expected = np.zeros((30, 30))
    for i in range(30):
        for j in order[i, :k]:
            weight = np.exp(-D[i, j] ** 2 / (sigma[i] * sigma[j]))
            expected[i, j] = expected[j, i] = weight
    np.testing.assert_allclose(W, expected, rtol=1e-10, atol=1e-14)
    assert np.all(np.diag(W) == 0)


def test_knn_affinity_connectivity_and_duplicates():
    X = np.array([[0.0], [0.0], [0.0], [5.0], [5.1], [5.2]])
    W = knn_affinity(X, n_neighbors=2, weights="connectivity").toarray()
    assert set(np.unique(W)) <= {0.0, 1.0}
    np.testing.assert_array_equal(W, W.T)
    # Duplicates (sigma = 0) give finite weights, exactly 1 between equal rows.
    W = knn_affinity(X, n_neighbors=2, scale_neighbor=2).toarray()
    assert np.all(np.isfinite(W))
    assert W[0, 1] == 1.0


import scipy.spatial  # noqa: E402  (used by the brute-force test above)

# ----------------------------------------------------------- the embedding


@pytest.mark.parametrize("n, k", [(12, 3), (40, 5), (80, 8)])
@pytest.mark.parametrize("solver", ["arpack", "dense"])
def test_embedding_matches_dense_eigh(n, k, solver):
    rng = np.random.default_rng(n)
    W = random_graph(rng, n)
    L = dense_laplacian(W)
    np.testing.assert_allclose(normalized_laplacian(sp.csr_matrix(W)).toarray(), L, atol=1e-14)
    reference_values, reference_vectors = scipy.linalg.eigh(L)
    embedding, values = spectral_embedding(sp.csr_matrix(W), k, normalize_rows=False,
                                           solver=solver, random_state=0)
    np.testing.assert_allclose(values, reference_values[:k], atol=1e-10)
    # Same subspace (eigenvalues of this random graph are simple, so also each vector
    # up to sign); columns orthonormal.
    angles = scipy.linalg.subspace_angles(embedding, reference_vectors[:, :k])
    assert angles.max() < 1e-6
    np.testing.assert_allclose(embedding.T @ embedding, np.eye(k), atol=1e-10)
    for column in range(k):
        assert abs(abs(embedding[:, column] @ reference_vectors[:, column]) - 1) < 1e-8


@pytest.mark.parametrize("solver", ["arpack", "dense"])
def test_disconnected_components_give_zero_eigenvalues(solver):
    rng = np.random.default_rng(1)
    sizes = [15, 20, 25]
    blocks = [random_graph(rng, size, density=0.5) for size in sizes]
    W = scipy.linalg.block_diag(*blocks)
    perm = rng.permutation(len(W))
    W = W[np.ix_(perm, perm)]
    labels = np.repeat(np.arange(3), sizes)[perm]
    embedding, values = spectral_embedding(sp.csr_matrix(W), 4, solver=solver, random_state=0)
    np.testing.assert_allclose(values[:3], 0, atol=1e-10)
    assert values[3] > 1e-3
    # After row normalisation each component collapses to one point, the points of
    # different components are orthogonal (in the span of the first three vectors).
    first3, _ = spectral_embedding(sp.csr_matrix(W), 3, solver=solver, random_state=0)
    for component in range(3):
        rows = first3[labels == component]
        np.testing.assert_allclose(rows, np.broadcast_to(rows[0], rows.shape), atol=1e-8)
    centers = np.array([first3[labels == c][0] for c in range(3)])
    np.testing.assert_allclose(centers @ centers.T, np.eye(3), atol=1e-8)


def test_embedding_invariances():
    rng = np.random.default_rng(2)
    W = random_graph(rng, 50)
    base, values = spectral_embedding(W, 4, normalize_rows=False, solver="dense")
    # Scaling all weights changes neither L nor the embedding.
    scaled, scaled_values = spectral_embedding(7.5 * W, 4, normalize_rows=False, solver="dense")
    np.testing.assert_allclose(scaled_values, values, atol=1e-12)
    np.testing.assert_allclose(np.abs(scaled), np.abs(base), atol=1e-10)
    # Relabelling the vertices permutes the rows.
    perm = rng.permutation(50)
    permuted, permuted_values = spectral_embedding(W[np.ix_(perm, perm)], 4,
                                                   normalize_rows=False, solver="dense")
    np.testing.assert_allclose(permuted_values, values, atol=1e-12)
    np.testing.assert_allclose(np.abs(permuted), np.abs(base[perm]), atol=1e-8)
    # Dense and sparse inputs agree; ARPACK with any seed agrees with the dense solver
    # up to sign, which the sign convention fixes.
    sparse, _ = spectral_embedding(sp.csr_matrix(W), 4, normalize_rows=False, solver="dense")
    np.testing.assert_allclose(sparse, base, atol=1e-12)
    for seed in (0, 1):
        arpack, _ = spectral_embedding(W, 4, normalize_rows=False, solver="arpack",
                                       random_state=seed)
        np.testing.assert_allclose(arpack, base, atol=1e-8)


def test_rows_have_unit_length():
    rng = np.random.default_rng(3)
    embedding, _ = spectral_embedding(random_graph(rng, 30), 3)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0)


def test_spectral_clustering_separates_blobs_and_is_invariant():
    rng = np.random.default_rng(4)
    X, y = blobs(rng)
    labels = spectral_clustering(X, 3, random_state=0)
    assert adjusted_rand_score(y, labels) == 1.0
    # Translation, rotation and scale of the data leave the graph's weights unchanged.
    rotation, _ = np.linalg.qr(rng.normal(size=(2, 2)))
    moved = spectral_clustering(3.0 * X @ rotation + 100.0, 3, random_state=0)
    assert adjusted_rand_score(labels, moved) == 1.0
    # Same seed, same labels; a custom assignment function is used.
    np.testing.assert_array_equal(spectral_clustering(X, 3, random_state=0), labels)
    calls = []

    def assign(embedding, n_clusters, rng):
        calls.append(embedding.shape)
        return np.argmax(embedding, axis=1) % n_clusters

    spectral_clustering(X, 3, assign=assign, random_state=0)
    assert calls == [(120, 3)]
    labels, embedding = spectral_clustering(X, 3, random_state=0, return_embedding=True)
    assert embedding.shape == (120, 3)


def test_spectral_clustering_finds_rings_kmeans_cannot():
    rng = np.random.default_rng(5)
    angles = rng.uniform(0, 2 * np.pi, 300)
    radius = np.repeat([1.0, 4.0], 150)
    X = np.column_stack([radius * np.cos(angles), radius * np.sin(angles)])
    X += rng.normal(0, 0.1, X.shape)
    labels = spectral_clustering(X, 2, n_neighbors=10, random_state=0)
    assert adjusted_rand_score(np.repeat([0, 1], 150), labels) == 1.0


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("scale", [1e160, 1e-160, 1e300, 1e-300])
def test_knn_affinity_at_extreme_scales_is_the_unit_scale_graph(scale):
    # Squared distances of data near 1e160 overflow float64 and those of data near
    # 1e-160 underflow; the graph, which depends on ratios of distances, must not.
    X, _ = blobs(np.random.default_rng(8))
    reference = knn_affinity(X, 6)
    scaled = knn_affinity(X * scale, 6)
    np.testing.assert_array_equal(scaled.indices, reference.indices)
    np.testing.assert_allclose(scaled.data, reference.data, rtol=1e-12)
    # Scaled by a power of two the data round alike: the same graph to the last bit.
    exact = knn_affinity(np.ldexp(X, int(np.log2(scale))), 6)
    assert (exact != reference).nnz == 0


# ------------------------------------------------------------- normalised cut


def test_normalized_cut_hand_computed():
    # A path 0 - 1 - 2 - 3 with weights 1, 2, 3, a self-loop of 4 on vertex 3, and a
    # vertex 4 with no edges. Degrees: 1, 3, 5, 7, 0.
    W = np.zeros((5, 5))
    W[0, 1] = W[1, 0] = 1.0
    W[1, 2] = W[2, 1] = 2.0
    W[2, 3] = W[3, 2] = 3.0
    W[3, 3] = 4.0
    # Clusters {0, 1}: cut 2, vol 4; {2}: cut 2 + 3, vol 5; {3}: cut 3, vol 7; {4}: vol 0.
    expected = 2 / 4 + 5 / 5 + 3 / 7
    for labels in ([7, 7, -1, 3, 9], [0, 0, 1, 2, 3]):
        assert normalized_cut(W, labels) == pytest.approx(expected, rel=1e-15)
        assert normalized_cut(sp.csr_matrix(W), labels) == pytest.approx(expected, rel=1e-15)
    assert normalized_cut(W, [0, 0, 0, 0, 1]) == 0.0
    assert normalized_cut(W, np.zeros(5, dtype=int)) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_normalized_cut_is_the_trace_the_embedding_relaxes(seed):
    rng = np.random.default_rng(seed)
    W = random_graph(rng, 25)
    labels = rng.integers(0, 4, 25)
    degree = W.sum(axis=1)
    # H's column c: D^1/2 1_c / sqrt(vol c); the Laplacian L = I - D^-1/2 W D^-1/2.
    H = np.stack([np.sqrt(degree) * (labels == c) / np.sqrt(degree[labels == c].sum())
                  for c in np.unique(labels)], axis=1)
    np.testing.assert_allclose(H.T @ H, np.eye(H.shape[1]), atol=1e-12)
    laplacian = normalized_laplacian(W).toarray()
    assert normalized_cut(W, labels) == pytest.approx(np.trace(H.T @ laplacian @ H), rel=1e-12)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("call, error, match", [
    (lambda: knn_affinity(np.zeros((5, 2)) + np.nan), ValueError, "NaN"),
    (lambda: knn_affinity(np.zeros((5, 2)), n_neighbors=5), ValueError, "n_neighbors"),
    (lambda: knn_affinity(np.zeros((5, 2)), n_neighbors=2.5), TypeError, "n_neighbors"),
    (lambda: knn_affinity(np.arange(5.0).reshape(5, 1), n_neighbors=3, scale_neighbor=4),
     ValueError, "scale_neighbor"),
    (lambda: knn_affinity(np.zeros((5, 2)), n_neighbors=2, weights="gauss"), ValueError, "weights"),
    (lambda: knn_affinity(np.zeros((1, 2))), ValueError, "minimum of 2"),
    (lambda: spectral_embedding(np.ones((3, 4)), 2), ValueError, "square"),
    (lambda: spectral_embedding(np.array([[0, 1.0], [2.0, 0]]), 1), ValueError, "symmetric"),
    (lambda: spectral_embedding(np.array([[0, -1.0], [-1.0, 0]]), 1), ValueError, "non-negative"),
    (lambda: spectral_embedding(np.array([[0, np.inf], [np.inf, 0]]), 1), ValueError, "NaN"),
    (lambda: spectral_embedding(np.ones((3, 3)), 4), ValueError, "n_components"),
    (lambda: spectral_embedding(np.ones((3, 3)), 1, solver="lobpcg"), ValueError, "solver"),
    (lambda: spectral_embedding(np.ones((3, 3)), 2, solver="arpack"), ValueError, "dense"),
    (lambda: spectral_embedding([[0, 1], [1, 0]], 1), TypeError, "sparse matrix or an ndarray"),
    (lambda: spectral_clustering(np.zeros((5, 2)), 1), ValueError, "n_clusters"),
    (lambda: spectral_clustering(np.zeros((5, 2)), 2, random_state=-1), ValueError, "random_state"),
    (lambda: consensus_clustering(np.zeros(4, dtype=int), 2), ValueError, "shape"),
    (lambda: consensus_clustering(np.zeros((2, 4)), 2), TypeError, "integer"),
    (lambda: consensus_clustering(np.zeros((2, 4), dtype=int), 5), ValueError, "n_clusters"),
    (lambda: coassociation_embedding(np.zeros((2, 4), dtype=int), 5), ValueError, "n_components"),
    (lambda: normalized_cut(np.ones((3, 3)), [0, 1]), ValueError, r"labels must have shape \(3,\)"),
    (lambda: normalized_cut(np.ones((3, 3)), [0.0, 1.0, 1.0]), TypeError, "integer"),
    (lambda: normalized_cut(np.array([[0, 1.0], [2.0, 0]]), [0, 1]), ValueError, "symmetric"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- consensus


def test_coassociation_hand_computed():
    labelings = [[0, 0, 1, 1],
                 [1, 1, 1, 0],
                 [5, 7, 7, 5]]
    # Pairs together: (0,1) in runs 1, 2 -> 2/3; (0,2) in run 2 -> 1/3; (0,3) in run 3
    # -> 1/3; (1,2) in runs 2, 3 -> 2/3; (1,3) never -> 0; (2,3) in run 1 -> 1/3.
    expected = np.array([[3, 2, 1, 1],
                         [2, 3, 2, 0],
                         [1, 2, 3, 1],
                         [1, 0, 1, 3]]) / 3
    np.testing.assert_allclose(coassociation(np.array(labelings)), expected)


def test_consensus_hand_computed():
    # Six points; three runs agree on {0,1,2} {3,4,5} up to renaming, one run moves
    # point 2. Co-association: inside each true group 1 or 3/4, across groups 0 or
    # 1/4 -> two components, one strong cut: the consensus is the majority.
    labelings = np.array([[0, 0, 0, 1, 1, 1],
                          [1, 1, 1, 0, 0, 0],
                          [2, 2, 2, 9, 9, 9],
                          [0, 0, 1, 1, 1, 1]])
    C = coassociation(labelings)
    assert C[0, 2] == 0.75 and C[2, 3] == 0.25 and C[0, 3] == 0.0
    for solver in ("dense", "arpack"):
        labels = consensus_clustering(labelings, 2, solver=solver, random_state=0)
        assert adjusted_rand_score([0, 0, 0, 1, 1, 1], labels) == 1.0


@pytest.mark.parametrize("solver", ["arpack", "dense"])
def test_consensus_operator_matches_dense_coassociation(solver):
    rng = np.random.default_rng(6)
    labelings = rng.integers(0, 4, (5, 60))
    labelings[:, :30] = rng.integers(0, 2, (5, 30))   # some structure, some noise
    reference, reference_values = spectral_embedding(coassociation(labelings), 3,
                                                     solver="dense")
    embedding, values = coassociation_embedding(labelings, 3, solver=solver, random_state=0)
    np.testing.assert_allclose(values, reference_values, atol=1e-10)
    np.testing.assert_allclose(embedding, reference, atol=1e-7)


def test_identical_labelings_give_that_labeling():
    labels = np.random.default_rng(7).integers(0, 4, 50)
    labels[:4] = np.arange(4)
    consensus = consensus_clustering(np.array([labels, (labels + 1) % 4]), 4, random_state=0)
    assert adjusted_rand_score(labels, consensus) == 1.0
