r"""Spectral embedding and clustering of a k-nearest-neighbour graph, and a consensus of labelings.

The spectral route clusters by connectivity rather than by distance to a centre: two
points belong together when a chain of near neighbours joins them. It is the start
that N2D and SpectralNet give deep clustering (an autoencoder's codes, their kNN
graph, the graph's Laplacian eigenvectors, then k-means), here in NumPy and SciPy.

Pipeline (Ng, Jordan and Weiss, 2002, with Zelnik-Manor and Perona's self-tuning
weights, 2004):

1. :func:`knn_affinity` — each sample's ``n_neighbors`` nearest other samples, weighted
   :math:`w_{ij} = \exp(-d_{ij}^2 / (\sigma_i \sigma_j))` with :math:`\sigma_i` the
   distance to the sample's ``scale_neighbor``-th neighbour, symmetrised by keeping an
   edge when either end chose it.
2. :func:`normalized_laplacian` — :math:`L = I - D^{-1/2} W D^{-1/2}`.
3. :func:`spectral_embedding` — the eigenvectors of the ``n_components`` smallest
   eigenvalues of L (``scipy.sparse.linalg.eigsh``), rows scaled to unit length.
4. :func:`spectral_clustering` — k-means on that embedding (or any ``assign``
   function the caller passes, e.g. DEC's own k-means).

:func:`normalized_cut` is what the embedding relaxes: the value of a partition of the
graph, lower for clusters joined by less weight relative to their own.

:func:`coassociation` and :func:`consensus_clustering` combine several labelings of
the same samples (restarts of a clustering method) into one: the co-association
matrix :math:`C = H H^T / r` (:math:`H` the one-hot labelings side by side, ``r`` of
them) is a graph whose spectral clustering is the consensus. C is never formed: the
eigensolver multiplies by :math:`H` and :math:`H^T`.
"""

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh

from .lloyd import kmeans
from .scaling import SQUARED_DISTANCE_RANGE, power_of_two_scale
from .validation import check_array, check_integer, check_option, check_random_state

__all__ = ["knn_affinity", "normalized_laplacian", "normalized_cut", "spectral_embedding",
           "spectral_clustering", "coassociation", "coassociation_embedding",
           "consensus_clustering"]

# Rows of X whose distances to all n samples are computed at once in the neighbour
# search: the block of distances takes about this many bytes.
_BLOCK_BYTES = 32 << 20

# Graphs with at most this many vertices are solved with a dense eigh by "auto": a
# dense solve is exact and ARPACK's setup dominates for tiny graphs; at 1,797 vertices
# the dense solve already took 1.2 s against ARPACK's 0.1 s.
_DENSE_MAX = 300

# ------------------------------------------------------------------- the graph


def _nearest_neighbors(X, n_neighbors):
    """Indices and distances of each row's ``n_neighbors`` nearest other rows, nearest first.

    Rows are compared with all samples one block at a time, through one GEMM each
    (``|x|^2 - 2 x.y + |y|^2`` on centred data, which keeps the cancellation small);
    the distances to the chosen neighbours are then recomputed directly.
    """
    n_samples = X.shape[0]
    centered = X - X.mean(axis=0)
    sq_norms = np.einsum("ij,ij->i", centered, centered)
    rows_per_block = max(1, _BLOCK_BYTES // (8 * n_samples))
    indices = np.empty((n_samples, n_neighbors), dtype=np.intp)
    for start in range(0, n_samples, rows_per_block):
        stop = min(start + rows_per_block, n_samples)
        scores = centered[start:stop] @ centered.T
        scores *= -2.0
        scores += sq_norms[None, :]        # + |x_i|^2 is the same along a row: not needed
        rows = np.arange(stop - start)
        scores[rows, start + rows] = np.inf  # a sample is not its own neighbour
        nearest = np.argpartition(scores, n_neighbors - 1, axis=1)[:, :n_neighbors]
        order = np.argsort(np.take_along_axis(scores, nearest, axis=1), axis=1, kind="stable")
        indices[start:stop] = np.take_along_axis(nearest, order, axis=1)
    differences = X[:, None, :] - X[indices] if n_samples * n_neighbors * X.shape[1] <= 1 << 24 \
        else None
    if differences is not None:
        distances = np.sqrt(np.einsum("ijk,ijk->ij", differences, differences))
    else:
        distances = np.empty((n_samples, n_neighbors))
        for column in range(n_neighbors):
            difference = X - X[indices[:, column]]
            distances[:, column] = np.sqrt(np.einsum("ij,ij->i", difference, difference))
    # Recomputed distances may reorder near-ties; keep each row sorted.
    order = np.argsort(distances, axis=1, kind="stable")
    return np.take_along_axis(indices, order, axis=1), np.take_along_axis(distances, order, axis=1)


def knn_affinity(X, n_neighbors=10, scale_neighbor=None, weights="self-tuning"):
    r"""Symmetric affinity matrix of the k-nearest-neighbour graph of the rows of ``X``.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Computed in float64.
    n_neighbors : int, default=10
        Each sample is joined to its ``n_neighbors`` nearest other samples (Euclidean).
    scale_neighbor : int or None, default=None
        Self-tuning scale: :math:`\sigma_i` is the distance from sample i to its
        ``scale_neighbor``-th nearest neighbour, at most ``n_neighbors``. None:
        ``min(7, n_neighbors)`` (Zelnik-Manor and Perona use 7).
    weights : {"self-tuning", "connectivity"}, default="self-tuning"
        ``"self-tuning"``: :math:`w_{ij} = \exp(-d_{ij}^2 / (\sigma_i \sigma_j))`;
        ``"connectivity"``: every edge weighs 1.

    Returns
    -------
    affinity : scipy.sparse.csr_matrix of shape (n_samples, n_samples)
        Symmetric, zero diagonal, non-negative; entry (i, j) is non-zero when j is
        among the neighbours of i or i among those of j (the weight is the same
        either way).

    Raises
    ------
    ValueError
        Bad ``X`` (see :func:`npclust.validation.check_array`), ``n_neighbors``
        outside ``[1, n_samples - 1]``, ``scale_neighbor`` outside ``[1, n_neighbors]``,
        or an unknown ``weights``.

    Notes
    -----
    The scale adapts to the local density, so a dense cluster and a sparse one both
    get weights of order 1 inside and small weights across a gap, without a global
    bandwidth to tune. A sample with many exact duplicates has :math:`\sigma_i = 0`;
    its scale is raised to the smallest positive scale in the data (or 1 if every
    scale is 0), so duplicates join with weight 1 and no weight is NaN.
    """
    X = check_array(X, dtype=np.float64, min_samples=2)
    n_samples = X.shape[0]
    n_neighbors = check_integer(n_neighbors, "n_neighbors", 1, n_samples - 1)
    if scale_neighbor is None:
        scale_neighbor = min(7, n_neighbors)
    scale_neighbor = check_integer(scale_neighbor, "scale_neighbor", 1, n_neighbors)
    check_option(weights, "weights", ("self-tuning", "connectivity"))
    # The graph's weights depend on ratios of distances only, and a power of two is exact:
    # data far outside float64's range for squared distances give the same graph.
    scale = power_of_two_scale(X, safe_range=SQUARED_DISTANCE_RANGE[X.dtype])
    if scale != 1.0:
        X = X * scale
    indices, distances = _nearest_neighbors(X, n_neighbors)
    rows = np.repeat(np.arange(n_samples), n_neighbors)
    columns = indices.ravel()
    if weights == "connectivity":
        values = np.ones(rows.size)
    else:
        sigma = distances[:, scale_neighbor - 1].copy()
        positive = sigma[sigma > 0]
        sigma[sigma <= 0] = positive.min() if positive.size else 1.0
        values = np.exp(-distances.ravel() ** 2 / (sigma[rows] * sigma[columns]))
    directed = sp.csr_matrix((values, (rows, columns)), shape=(n_samples, n_samples))
    # Union of the two directions; both carry the same weight, so max() is exact.
    return directed.maximum(directed.T).tocsr()


def _check_affinity(affinity):
    if not (sp.issparse(affinity) or isinstance(affinity, np.ndarray)):
        raise TypeError(f"affinity must be a scipy sparse matrix or an ndarray, got "
                        f"{type(affinity).__name__}")
    if affinity.ndim != 2 or affinity.shape[0] != affinity.shape[1]:
        raise ValueError(f"affinity must be a square matrix, got shape {affinity.shape}")
    affinity = sp.csr_matrix(affinity, dtype=np.float64)
    values = affinity.data
    if not np.all(np.isfinite(values)):
        raise ValueError("affinity contains NaN or infinity")
    if np.any(values < 0):
        raise ValueError("affinity must be non-negative")
    asymmetry = abs(affinity - affinity.T)
    if asymmetry.nnz and asymmetry.max() > 1e-10 * max(values.max(initial=0.0), 1e-300):
        raise ValueError("affinity must be symmetric")
    return affinity


def _inverse_sqrt_degree(affinity):
    """:math:`D^{-1/2}` as a vector; isolated vertices (degree 0) get 0."""
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    inverse_sqrt = np.zeros_like(degree)
    np.divide(1.0, np.sqrt(degree), out=inverse_sqrt, where=degree > 0)
    return inverse_sqrt


def normalized_laplacian(affinity):
    r"""The symmetric normalised Laplacian :math:`L = I - D^{-1/2} W D^{-1/2}`.

    Parameters
    ----------
    affinity : scipy sparse matrix or ndarray of shape (n, n)
        Symmetric, non-negative weights :math:`W`.

    Returns
    -------
    laplacian : scipy.sparse.csr_matrix of shape (n, n)
        Its eigenvalues lie in [0, 2]; the multiplicity of 0 is the number of connected
        components. An isolated vertex (degree 0) keeps :math:`L_{ii} = 1` (its
        :math:`D^{-1/2}` is taken as 0).
    """
    affinity = _check_affinity(affinity)
    inverse_sqrt = _inverse_sqrt_degree(affinity)
    scaled = sp.diags(inverse_sqrt) @ affinity @ sp.diags(inverse_sqrt)
    return (sp.identity(affinity.shape[0], format="csr") - scaled).tocsr()


def normalized_cut(affinity, labels):
    r"""The normalised cut of a partition of a graph (Shi and Malik, 2000).

    Parameters
    ----------
    affinity : scipy sparse matrix or ndarray of shape (n, n)
        Symmetric, non-negative weights :math:`W`, e.g. from :func:`knn_affinity`.
    labels : array_like of int, shape (n,)
        The cluster of each vertex; any integer values.

    Returns
    -------
    float
        :math:`\sum_c \operatorname{cut}(A_c) / \operatorname{vol}(A_c)` over the
        clusters :math:`A_c`: :math:`\operatorname{cut}(A)` is the total weight of the
        edges from A to the other vertices, :math:`\operatorname{vol}(A)` the sum of
        the degrees of A. 0 for a partition that cuts no edge, at most the number of
        clusters. A cluster with :math:`\operatorname{vol}(A) = 0` has no edge to cut
        and adds 0.

    Notes
    -----
    Spectral clustering relaxes this (von Luxburg, 2007, section 5.3): with
    :math:`h_c = D^{1/2} 1_{A_c} / \sqrt{\operatorname{vol}(A_c)}` the columns of H are
    orthonormal and :math:`\operatorname{tr}(H^T L H)` is the normalised cut, L the
    normalised Laplacian. Minimising the trace over all orthonormal H instead of these
    indicator matrices gives the eigenvectors of the smallest eigenvalues, which
    :func:`spectral_embedding` computes; the k-means that follows rounds them to a
    partition, so the partition's cut is near, not at, the relaxed minimum. Self-loops
    count in the degrees and never in a cut.

    Examples
    --------
    Two pairs joined by an edge of weight 1, and one edge of weight 0.5 between them:

    >>> import numpy as np
    >>> from npclust.spectral import normalized_cut
    >>> W = np.array([[0, 1, 0.5, 0], [1, 0, 0, 0], [0.5, 0, 0, 1], [0, 0, 1, 0]])
    >>> normalized_cut(W, [0, 0, 1, 1])      # 0.5 / 2.5 for each pair
    0.4
    """
    affinity = _check_affinity(affinity).tocoo()
    n = affinity.shape[0]
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per vertex, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integer cluster labels, got dtype {labels.dtype}")
    _, clusters = np.unique(labels, return_inverse=True)
    n_clusters = int(clusters.max()) + 1 if n else 0
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    volume = np.bincount(clusters, weights=degree, minlength=n_clusters)
    crossing = clusters[affinity.row] != clusters[affinity.col]
    cut = np.bincount(clusters[affinity.row[crossing]], weights=affinity.data[crossing],
                      minlength=n_clusters)
    has_weight = volume > 0
    return float(np.sum(cut[has_weight] / volume[has_weight]))


# ----------------------------------------------------------- the embedding


def _top_eigenvectors(matvec, n, n_components, solver, rng, dense_matrix):
    """Eigenpairs of the ``n_components`` largest eigenvalues of a symmetric operator
    with spectrum in [-1, 1], largest first."""
    if solver == "auto":
        solver = "dense" if n <= _DENSE_MAX or n_components >= n - 1 else "arpack"
    if solver == "dense":
        values, vectors = np.linalg.eigh(dense_matrix())
        return values[::-1][:n_components], vectors[:, ::-1][:, :n_components]
    if n_components >= n - 1:
        raise ValueError(f"solver='arpack' needs n_components < n - 1 = {n - 1}, got "
                         f"{n_components}; use solver='dense'")
    # M + I has its spectrum in [0, 2]: the wanted eigenvalues are those of largest
    # magnitude, the mode in which ARPACK converges best (no shift-invert needed).
    shifted = LinearOperator((n, n), matvec=lambda v: matvec(v) + v, dtype=np.float64)
    start = rng.uniform(-1.0, 1.0, n)
    values, vectors = eigsh(shifted, k=n_components, which="LM", v0=start,
                            ncv=min(n, max(2 * n_components + 1, 20)), tol=0.0)
    order = np.argsort(values)[::-1]
    return values[order] - 1.0, vectors[:, order]


def spectral_embedding(affinity, n_components, normalize_rows=True, solver="auto",
                       random_state=None):
    r"""Eigenvectors of the smallest eigenvalues of the normalised Laplacian of a graph.

    Parameters
    ----------
    affinity : scipy sparse matrix or ndarray of shape (n_samples, n_samples)
        Symmetric non-negative weights, e.g. from :func:`knn_affinity`.
    n_components : int
        Number of eigenvectors, at least 1 and at most ``n_samples``; for clustering,
        the number of clusters.
    normalize_rows : bool, default=True
        Scale each row of the embedding to unit length (Ng, Jordan and Weiss); rows
        that are exactly zero stay zero. With False the columns are the orthonormal
        eigenvectors themselves.
    solver : {"auto", "arpack", "dense"}, default="auto"
        ``"arpack"``: ``scipy.sparse.linalg.eigsh`` on :math:`D^{-1/2} W D^{-1/2} + I`
        (largest magnitude, matrix-free); ``"dense"``: ``numpy.linalg.eigh`` of the
        dense matrix; ``"auto"``: dense up to 300 vertices, else ARPACK.
    random_state : None, int or numpy.random.Generator
        Seeds ARPACK's starting vector.

    Returns
    -------
    embedding : ndarray of shape (n_samples, n_components)
    eigenvalues : ndarray of shape (n_components,)
        The corresponding eigenvalues of :math:`L`, ascending.

    Notes
    -----
    The smallest eigenvalues of :math:`L = I - M` with :math:`M = D^{-1/2} W D^{-1/2}`
    are one minus the largest of :math:`M`, so the solver works on :math:`M + I`, whose
    spectrum is in [0, 2], without forming :math:`L`. With ``c`` connected components
    the eigenvalue 0 has multiplicity ``c`` and its eigenspace is spanned by the
    vectors :math:`D^{1/2} 1_{\text{component}}`: after row normalisation all samples
    of a component share one point of the embedding. Each column's sign is fixed so
    that its largest-magnitude entry is positive (eigenvectors are defined up to sign),
    which makes the output deterministic for a given solver.
    """
    affinity = _check_affinity(affinity)
    n = affinity.shape[0]
    n_components = check_integer(n_components, "n_components", 1, n)
    check_option(solver, "solver", ("auto", "arpack", "dense"))
    inverse_sqrt = _inverse_sqrt_degree(affinity)
    scaled = (sp.diags(inverse_sqrt) @ affinity @ sp.diags(inverse_sqrt)).tocsr()
    values, vectors = _top_eigenvectors(scaled.dot, n, n_components, solver,
                                        check_random_state(random_state), scaled.toarray)
    return _finish_embedding(vectors, normalize_rows), 1.0 - values


def _finish_embedding(vectors, normalize_rows):
    largest = np.abs(vectors).argmax(axis=0)
    vectors = vectors * np.sign(vectors[largest, np.arange(vectors.shape[1])])
    if normalize_rows:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


def spectral_clustering(X, n_clusters, n_neighbors=10, scale_neighbor=None, weights="self-tuning",
                        n_init=10, assign=None, solver="auto", random_state=None,
                        return_embedding=False):
    """Cluster the rows of ``X`` by k-means on the spectral embedding of their kNN graph.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        E.g. an autoencoder's latent codes.
    n_clusters : int
    n_neighbors, scale_neighbor, weights
        The graph, see :func:`knn_affinity`.
    n_init : int, default=10
        k-means restarts on the embedding (lowest inertia kept).
    assign : callable or None
        ``assign(embedding, n_clusters, rng) -> labels`` replaces the built-in k-means
        (for instance with an estimator's own k-means or a Gaussian mixture).
    solver : {"auto", "arpack", "dense"}, default="auto"
        See :func:`spectral_embedding`.
    random_state : None, int or numpy.random.Generator
    return_embedding : bool, default=False

    Returns
    -------
    labels : ndarray of shape (n_samples,) of intp
        Every cluster non-empty.
    embedding : ndarray of shape (n_samples, n_clusters)
        Only if ``return_embedding``: the row-normalised embedding that was clustered.
    """
    X = check_array(X, dtype=np.float64, min_samples=2)
    n_clusters = check_integer(n_clusters, "n_clusters", 2, X.shape[0])
    n_init = check_integer(n_init, "n_init", 1)
    rng = check_random_state(random_state)
    affinity = knn_affinity(X, n_neighbors, scale_neighbor, weights)
    embedding, _ = spectral_embedding(affinity, n_clusters, solver=solver, random_state=rng)
    labels = (assign(embedding, n_clusters, rng) if assign is not None
              else kmeans(embedding, n_clusters, n_init, random_state=rng)[1])
    labels = np.asarray(labels, dtype=np.intp)
    return (labels, embedding) if return_embedding else labels


# ---------------------------------------------------------------- consensus


def _one_hot_labelings(labelings):
    labelings = np.asarray(labelings)
    if labelings.ndim != 2 or labelings.shape[0] < 1 or labelings.shape[1] < 2:
        raise ValueError(f"labelings must have shape (n_labelings, n_samples) with at least one "
                         f"labeling of at least 2 samples, got shape {labelings.shape}")
    if not np.issubdtype(labelings.dtype, np.integer):
        raise TypeError(f"labelings must be integer cluster labels, got dtype {labelings.dtype}")
    n_runs, n_samples = labelings.shape
    blocks = []
    for labels in labelings:
        _, codes = np.unique(labels, return_inverse=True)
        blocks.append(sp.csr_matrix((np.ones(n_samples), (np.arange(n_samples), codes.ravel()))))
    return sp.hstack(blocks).tocsr(), n_runs


def coassociation(labelings):
    """Fraction of labelings that put each pair of samples in the same cluster.

    Parameters
    ----------
    labelings : array_like of int, shape (n_labelings, n_samples)
        Each row one clustering of the same samples; label values need not agree
        between rows (only "same cluster or not" counts).

    Returns
    -------
    ndarray of shape (n_samples, n_samples)
        ``C[i, j]`` = (number of rows with ``labels[i] == labels[j]``) / n_labelings;
        the diagonal is 1. Dense: for large n use :func:`consensus_clustering`, which
        never forms it.
    """
    one_hot, n_runs = _one_hot_labelings(labelings)
    return (one_hot @ one_hot.T).toarray() / n_runs


def coassociation_embedding(labelings, n_components, solver="auto", random_state=None):
    r"""Spectral embedding of the co-association graph of several labelings, matrix-free.

    Equal to ``spectral_embedding(coassociation(labelings), n_components)`` without
    forming the n x n matrix.

    Parameters
    ----------
    labelings : array_like of int, shape (n_labelings, n_samples)
    n_components : int
    solver : {"auto", "arpack", "dense"}, default="auto"
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    embedding : ndarray of shape (n_samples, n_components)
        Row-normalised.
    eigenvalues : ndarray of shape (n_components,)
        Of the normalised Laplacian of C, ascending.

    Notes
    -----
    The co-association matrix :math:`C = H H^T / r`, with :math:`H` the one-hot
    labelings side by side, is the affinity (its diagonal of ones included: it adds the
    same 1 to every vertex's degree term and keeps every degree positive). Degrees are
    :math:`C 1 = H (H^T 1) / r` and a product with :math:`D^{-1/2} C D^{-1/2}` costs
    :math:`O(n r)`.
    """
    one_hot, n_runs = _one_hot_labelings(labelings)
    n = one_hot.shape[0]
    n_components = check_integer(n_components, "n_components", 1, n)
    check_option(solver, "solver", ("auto", "arpack", "dense"))
    degree = one_hot @ np.asarray(one_hot.sum(axis=0)).ravel() / n_runs
    inverse_sqrt = 1.0 / np.sqrt(degree)           # every degree >= 1 (the diagonal)
    scaled_h = (sp.diags(inverse_sqrt) @ one_hot / np.sqrt(n_runs)).tocsr()
    values, vectors = _top_eigenvectors(
        lambda v: scaled_h @ (scaled_h.T @ v), n, n_components, solver,
        check_random_state(random_state), lambda: (scaled_h @ scaled_h.T).toarray())
    return _finish_embedding(vectors, True), 1.0 - values


def consensus_clustering(labelings, n_clusters, n_init=10, solver="auto", random_state=None):
    """One labeling that agrees best with several: spectral clustering of their co-association.

    Parameters
    ----------
    labelings : array_like of int, shape (n_labelings, n_samples)
        Each row one clustering of the same samples (e.g. restarts of a method).
    n_clusters : int
    n_init : int, default=10
        k-means restarts on the embedding.
    solver : {"auto", "arpack", "dense"}, default="auto"
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    labels : ndarray of shape (n_samples,) of intp

    Notes
    -----
    k-means on :func:`coassociation_embedding`. When all labelings agree, C is block
    diagonal with one block per cluster and the consensus is that labeling.
    """
    labelings = np.asarray(labelings)
    n_samples = labelings.shape[-1] if labelings.ndim else 0
    n_clusters = check_integer(n_clusters, "n_clusters", 2, max(n_samples, 2))
    n_init = check_integer(n_init, "n_init", 1)
    rng = check_random_state(random_state)
    embedding, _ = coassociation_embedding(labelings, n_clusters, solver, rng)
    return kmeans(embedding, n_clusters, n_init, random_state=rng)[1]
