"""k-means, the algorithm: Lloyd's iterations from k-means++ seeding, in blocked GEMMs.

Shared by the :class:`~npclust.cluster.KMeans` estimator, DEC's initial centers and
spectral clustering's last step (:mod:`npclust.spectral`).
"""

import numpy as np

from .validation import check_random_state

__all__ = ["kmeans", "squared_distances", "power_of_two_scale"]


def squared_distances(X, centers, X_squared_norms):
    """``||x_i - c_j||^2`` as an (n, k) matrix through one GEMM, clipped at 0.

    The expansion ``|x|^2 - 2 x.c + |c|^2`` loses precision for points very close to
    a center and can dip below zero by rounding; the clip keeps it a distance.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    centers : ndarray of shape (n_clusters, n_features)
    X_squared_norms : ndarray of shape (n_samples,)
        ``|x_i|^2``, computed once by the caller.

    Returns
    -------
    ndarray of shape (n_samples, n_clusters)
    """
    distances = X @ centers.T
    distances *= -2.0
    distances += X_squared_norms[:, None]
    distances += np.einsum("ij,ij->i", centers, centers)[None, :]
    return np.maximum(distances, 0.0, out=distances)


def _kmeans_plus_plus(X, n_clusters, X_squared_norms, rng):
    """k-means++ seeding (Arthur & Vassilvitskii, 2007).

    The first center is a uniformly random sample; each next one is drawn with
    probability proportional to the squared distance to the nearest center so far.
    """
    n_samples = X.shape[0]
    centers = np.empty((n_clusters, X.shape[1]), dtype=X.dtype)
    centers[0] = X[rng.integers(n_samples)]
    closest = squared_distances(X, centers[:1], X_squared_norms)[:, 0]
    for index in range(1, n_clusters):
        total = closest.sum()
        if total > 0:
            choice = rng.choice(n_samples, p=closest / total)
        else:
            # Every point coincides with a center already: any point will do.
            choice = rng.integers(n_samples)
        centers[index] = X[choice]
        np.minimum(closest, squared_distances(X, centers[index:index + 1], X_squared_norms)[:, 0],
                   out=closest)
    return centers


def _lloyd(X, centers, X_squared_norms, max_iter, tol):
    """Lloyd iterations from ``centers``; returns (centers, labels, inertia, n_iter).

    Stops when the squared center shift summed over centers is at most ``tol``
    (already scaled to the data). An emptied cluster takes over the point farthest
    from its center among clusters that can spare one, so k clusters stay k clusters
    as long as there are k distinct points.
    """
    n_clusters = centers.shape[0]
    for n_iter in range(1, max_iter + 1):
        labels, closest, sums = _assign(X, centers, X_squared_norms)
        counts = np.bincount(labels, minlength=n_clusters)
        if np.any(counts == 0):
            for point, source in _fill_empty_clusters(closest, labels, counts):
                sums[source] -= X[point]
                sums[labels[point]] += X[point]
        new_centers = sums / counts[:, None]
        shift = float(np.sum((new_centers - centers) ** 2))
        centers = new_centers
        if shift <= tol:
            break
    labels, closest, _ = _assign(X, centers, X_squared_norms)
    return centers, labels, float(closest.sum()), n_iter


# Rows of X per block in _assign: 4 MB, which stays in the last-level cache between
# the distance product and the sum product.
_ASSIGN_BLOCK_BYTES = 4 << 20


def _block_rows(X):
    """Rows of ``X`` in one block of about ``_ASSIGN_BLOCK_BYTES``."""
    return max(1, _ASSIGN_BLOCK_BYTES // (X.shape[1] * X.itemsize))


def _assign(X, centers, X_squared_norms):
    """Nearest center of every row, its squared distance, and each cluster's row sum.

    Works through ``X`` in blocks of rows small enough to stay in cache, so the data
    stream from memory once per iteration rather than once for the distances and
    again for the sums. A cluster's sum is the product of the block's one-hot
    assignment matrix with the block (a GEMM; ``np.add.at`` scatters row by row and
    took 330 ms per iteration on 70,000 x 784).
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    labels = np.empty(n_samples, dtype=np.intp)
    closest = np.empty(n_samples, dtype=X.dtype)
    sums = np.zeros((n_clusters, n_features), dtype=X.dtype)
    block_rows = _block_rows(X)
    assignment = np.zeros((n_clusters, min(block_rows, n_samples)), dtype=X.dtype)
    for start in range(0, n_samples, block_rows):
        stop = min(start + block_rows, n_samples)
        block = X[start:stop]
        distances = squared_distances(block, centers, X_squared_norms[start:stop])
        block_labels = distances.argmin(axis=1)
        rows = np.arange(stop - start)
        labels[start:stop] = block_labels
        closest[start:stop] = distances[rows, block_labels]
        one_hot = assignment[:, :stop - start]
        one_hot[block_labels, rows] = 1.0
        sums += one_hot @ block
        one_hot[block_labels, rows] = 0.0
    return labels, closest, sums


def _fill_empty_clusters(point_distances, labels, counts):
    """Give each empty cluster one point, in place: the farthest from its own center
    among points whose cluster keeps at least one other point. Returns the moves as
    ``(point, cluster it left)`` pairs."""
    point_distances = point_distances.astype(np.float64)
    moves = []
    for empty in np.flatnonzero(counts == 0):
        movable = np.where(counts[labels] > 1, point_distances, -np.inf)
        point = int(movable.argmax())
        moves.append((point, int(labels[point])))
        counts[labels[point]] -= 1
        labels[point], counts[empty] = empty, 1
        point_distances[point] = -np.inf
    return moves


def _mean_feature_variance(X):
    """``np.mean(np.var(X, axis=0))``, a block of rows at a time instead of through a
    centred copy of ``X`` (440 MB at 70,000 x 784 in float64)."""
    mean = X.mean(axis=0)
    total = 0.0
    block_rows = _block_rows(X)
    for start in range(0, X.shape[0], block_rows):
        deviations = X[start:start + block_rows] - mean
        total += float(np.einsum("ij,ij->", deviations, deviations, dtype=np.float64))
    return total / X.size


def _check_magnitude(X):
    """Refuse data whose squared distances would overflow float64 (|x| beyond ~1e150)."""
    # max(|x|) without the temporary array np.abs(X) would allocate.
    largest = max(float(X.max()), -float(X.min())) if X.size else 0.0
    if largest * largest * X.shape[1] > np.finfo(np.float64).max / 16:
        raise ValueError(
            f"X has values up to {largest:.3g}, too large for squared distances in float64; "
            "rescale the data (k-means labels do not change under a common scale factor)"
        )


# float32 squared distances overflow near 1e19 and underflow near 1e-19 (and their
# sums sooner); float64's limits lie far beyond. Inside this range of the largest
# absolute value the data are used as they are.
_SAFE_RANGE = {np.dtype(np.float32): (2.0 ** -32, 2.0 ** 32),
               np.dtype(np.float64): (2.0 ** -256, np.inf)}


def power_of_two_scale(*arrays):
    """A power of two bringing the largest absolute value of ``arrays`` into [1, 2), or 1.0
    when it already lies in the safe range of their dtype.

    Multiplying by a power of two is exact and every later rounding scales with it, so
    k-means on the scaled data makes bit for bit the same choices as it would in exact
    range, and its centres and inertia scale back exactly.

    Parameters
    ----------
    *arrays : ndarray
        Of one floating dtype; empty arrays are ignored.

    Returns
    -------
    float
    """
    largest = max((max(float(a.max()), -float(a.min())) for a in arrays if a.size), default=0.0)
    low, high = _SAFE_RANGE.get(arrays[0].dtype, (0.0, np.inf))
    if largest == 0.0 or low <= largest <= high:
        return 1.0
    return 2.0 ** -np.floor(np.log2(largest))


def kmeans(X, n_clusters, n_init=10, max_iter=300, tol=1e-4, random_state=None):
    """k-means clustering of the rows of ``X``, best of ``n_init`` seeded runs.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Floating-point data (not validated here; :class:`KMeans` validates).
    n_clusters : int
    n_init : int, default=10
        Runs from independent k-means++ seedings; the lowest inertia wins.
    max_iter : int, default=300
        Lloyd iterations per run at most.
    tol : float, default=1e-4
        Convergence threshold on the summed squared center shift, relative to the
        mean per-feature variance of ``X`` (scikit-learn's convention).
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
    labels : ndarray of shape (n_samples,)
    inertia : float
        Sum of squared distances of the samples to their centers.
    n_iter : int
        Lloyd iterations of the kept run.
    """
    rng = check_random_state(random_state)
    X = np.asarray(X)
    _check_magnitude(X)
    # float32 data at scales like 1e30 or 1e-30 would overflow or underflow in the
    # squared distances (every point at distance inf or 0: one cluster); scaled by a
    # power of two they are clustered exactly as the same data at a normal scale.
    scale = power_of_two_scale(X)
    if scale != 1.0:
        X = X * X.dtype.type(scale)
    X_squared_norms = np.einsum("ij,ij->i", X, X)
    scaled_tol = tol * _mean_feature_variance(X)
    best = None
    for _ in range(n_init):
        seeds = _kmeans_plus_plus(X, n_clusters, X_squared_norms, rng)
        run = _lloyd(X, seeds, X_squared_norms, max_iter, scaled_tol)
        if best is None or run[2] < best[2]:
            best = run
    if scale != 1.0:
        centers, labels, inertia, n_iter = best
        best = (centers / centers.dtype.type(scale), labels, inertia / scale ** 2, n_iter)
    return best
