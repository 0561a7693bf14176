"""k-means, the algorithm: Lloyd's iterations from k-means++ seeding, in blocked GEMMs.

Shared by the :class:`~npclust.cluster.KMeans` estimator, DEC's initial centers and
spectral clustering's last step (:mod:`npclust.spectral`).
"""

import numpy as np

from .scaling import SQUARED_DISTANCE_RANGE, power_of_two_scale
from .validation import check_random_state, largest_magnitude

__all__ = ["kmeans", "squared_distances"]


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


def _squared_distances_to(X, centers, X_squared_norms):
    """``||x_i - c_j||^2`` as a (k, n) matrix, centres by rows, clipped at 0.

    The same expansion as :func:`squared_distances` with the product taken as
    ``centers @ X.T``: with few centres OpenBLAS runs this orientation about 1.6 times
    as fast as ``X @ centers.T`` (``benchmarks/kmeans.py``).
    """
    distances = centers @ X.T
    distances *= -2.0
    distances += X_squared_norms[None, :]
    distances += np.einsum("ij,ij->i", centers, centers)[:, None]
    return np.maximum(distances, 0.0, out=distances)


def _kmeans_plus_plus(X, n_clusters, X_squared_norms, rng):
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, 2007, section 6).

    The first center is a uniformly random sample. Each next one is the best of
    ``2 + floor(ln k)`` candidates, each drawn with probability proportional to the
    squared distance to the nearest center so far: the candidate that leaves the
    smallest total squared distance wins. The plain rule (one candidate) seeds
    worse and leaves Lloyd's iterations more to do; the candidates' distances come
    from one matrix product.
    """
    n_samples = X.shape[0]
    n_candidates = 2 + int(np.log(n_clusters))
    centers = np.empty((n_clusters, X.shape[1]), dtype=X.dtype)
    centers[0] = X[rng.integers(n_samples)]
    closest = _squared_distances_to(X, centers[:1], X_squared_norms)[0]
    for index in range(1, n_clusters):
        cumulative = np.cumsum(closest, dtype=np.float64)
        if cumulative[-1] > 0:
            # side="right" never lands on a point at distance 0 (a center already).
            candidates = np.searchsorted(cumulative, rng.random(n_candidates) * cumulative[-1],
                                         side="right")
            np.minimum(candidates, n_samples - 1, out=candidates)
        else:
            # Every point coincides with a center already: any point will do.
            candidates = rng.integers(n_samples, size=n_candidates)
        candidate_closest = _squared_distances_to(X, X[candidates], X_squared_norms)
        np.minimum(candidate_closest, closest[None, :], out=candidate_closest)
        best = int(candidate_closest.sum(axis=1, dtype=np.float64).argmin())
        centers[index] = X[candidates[best]]
        closest = candidate_closest[best]
    return centers


def _lloyd(X, centers, X_squared_norms, max_iter, tol):
    """Lloyd iterations from ``centers``; returns (centers, labels, inertia, n_iter).

    Stops when no label changes (the centers are then already the means of their
    points) or when the squared center shift summed over centers is at most ``tol``
    (already scaled to the data). An emptied cluster takes over the point farthest
    from its center among clusters that can spare one, so k clusters stay k clusters
    as long as there are k distinct points.

    Two savings leave the iterations' results as they were. Hamerly's bounds (2010):
    each point keeps an upper bound on the distance to its own center and a lower
    bound on the distance to any other; a point whose upper bound lies below both the
    lower bound and half the gap from its center to the nearest other center cannot
    change cluster, and only the remaining points are measured again. And the cluster
    sums are carried from one iteration to the next, corrected for the points that
    changed cluster. Late iterations, where few points move, then cost little.
    """
    n_clusters = centers.shape[0]
    labels, closest, second_closest = _assign(X, centers, X_squared_norms)
    upper, lower = _distance_bounds(closest, second_closest)
    sums = _cluster_sums(X, labels, n_clusters)
    slack = _rounding_slack(X, X_squared_norms)
    for n_iter in range(1, max_iter + 1):
        if n_iter > 1:
            moved = _reassign(X, centers, X_squared_norms, labels, upper, lower, slack, sums)
            if moved == 0:
                return centers, labels, _inertia(X, centers, X_squared_norms), n_iter
        counts = np.bincount(labels, minlength=n_clusters)
        if np.any(counts == 0):
            # The refill rule needs every point's exact distance, not its bound.
            _, closest, _ = _assign(X, centers, X_squared_norms)
            points, sources = _fill_empty_clusters(closest, labels, counts)
            _move_points(sums, X, points, sources, labels[points])
            upper[points], lower[points] = np.inf, 0.0
        new_centers = (sums / counts[:, None]).astype(X.dtype, copy=False)
        shifts = np.sum((new_centers - centers).astype(np.float64) ** 2, axis=1)
        upper += np.sqrt(shifts)[labels]
        lower -= np.sqrt(shifts.max())
        centers = new_centers
        if float(shifts.sum()) <= tol:
            break
    labels, closest, _ = _assign(X, centers, X_squared_norms)
    return centers, labels, float(closest.sum(dtype=np.float64)), n_iter


def _distance_bounds(closest, second_closest):
    """Distances (float64) to the nearest and second-nearest center, from their squares."""
    return (np.sqrt(closest, dtype=np.float64), np.sqrt(second_closest, dtype=np.float64))


def _rounding_slack(X, X_squared_norms):
    """How far each computed distance may lie from the exact one, so that a bound
    test never skips a point over a rounding error.

    The squared distance ``|x|^2 - 2 x.c + |c|^2`` in the data's dtype is off by at
    most about ``3 d eps (|x|^2 + |c|^2)`` (dot products of d terms), and centers,
    being means of points, are no longer than the longest point; a square root turns
    an error of ``e`` in the square into at most ``sqrt(e)`` in the distance. Bounds
    on both sides of the test carry such an error, hence twice.
    """
    error = 3.0 * X.shape[1] * np.finfo(X.dtype).eps * (
        X_squared_norms.astype(np.float64) + float(X_squared_norms.max()))
    return 2.0 * np.sqrt(error)


def _reassign(X, centers, X_squared_norms, labels, upper, lower, slack, sums):
    """One assignment step with Hamerly's test: measure again only the points whose
    bounds allow a change; update ``labels``, the bounds and the cluster ``sums`` in
    place. Returns how many points changed cluster."""
    center_distances = np.sqrt(_squared_distances_to(centers, centers,
                                                     np.einsum("ij,ij->i", centers, centers)))
    np.fill_diagonal(center_distances, np.inf)
    half_gap = 0.5 * center_distances.min(axis=1)
    suspects = np.flatnonzero(upper + slack > np.maximum(half_gap[labels], lower))
    if suspects.size == 0:
        return 0
    if suspects.size > X.shape[0] // 2:
        # Most points: one pass over X in order beats gathering them.
        suspects = np.arange(X.shape[0])
        new_labels, closest, second_closest = _assign(X, centers, X_squared_norms)
    else:
        new_labels, closest, second_closest = _assign(X[suspects], centers,
                                                      X_squared_norms[suspects])
    upper[suspects], lower[suspects] = _distance_bounds(closest, second_closest)
    moved = suspects[new_labels != labels[suspects]]
    sources = labels[moved]
    labels[suspects] = new_labels
    if moved.size > X.shape[0] // 4:
        sums[...] = _cluster_sums(X, labels, sums.shape[0])
    else:
        _move_points(sums, X, moved, sources, labels[moved])
    return moved.size


def _inertia(X, centers, X_squared_norms):
    """Sum of squared distances of the points to their nearest center."""
    return float(_assign(X, centers, X_squared_norms)[1].sum(dtype=np.float64))


# Rows of X per block in _assign and _cluster_sums: 4 MB, about what the last-level
# cache holds while a block's product is formed.
_ASSIGN_BLOCK_BYTES = 4 << 20


def _block_rows(X):
    """Rows of ``X`` in one block of about ``_ASSIGN_BLOCK_BYTES``."""
    return max(1, _ASSIGN_BLOCK_BYTES // (X.shape[1] * X.itemsize))


def _assign(X, centers, X_squared_norms):
    """Nearest center of every row of ``X``, its squared distance and the squared
    distance to the second-nearest center (inf with one center), a block of rows at a
    time so that the (k, block) distance matrix stays small.

    The nearest center minimises ``|c|^2 - 2 x.c``; ``|x|^2`` is added to the chosen
    distances only, and the factor -2 rides on the k centers rather than on the k x n
    products (a power of two: the products are the same bits).
    """
    n_samples = X.shape[0]
    labels = np.empty(n_samples, dtype=np.intp)
    closest = np.empty(n_samples, dtype=X.dtype)
    second_closest = np.empty(n_samples, dtype=X.dtype)
    scaled_centers = centers * centers.dtype.type(-2.0)
    center_norms = np.einsum("ij,ij->i", centers, centers)[:, None]
    block_rows = _block_rows(X)
    for start in range(0, n_samples, block_rows):
        stop = min(start + block_rows, n_samples)
        partial_distances = scaled_centers @ X[start:stop].T
        partial_distances += center_norms
        block_labels = partial_distances.argmin(axis=0)
        rows = np.arange(stop - start)
        labels[start:stop] = block_labels
        closest[start:stop] = partial_distances[block_labels, rows]
        partial_distances[block_labels, rows] = np.inf
        second_closest[start:stop] = partial_distances.min(axis=0)
    for distances in (closest, second_closest):
        distances += X_squared_norms
        np.maximum(distances, 0.0, out=distances)
    return labels, closest, second_closest


def _one_hot_sums(block, labels, n_clusters, removed_from=None):
    """Each cluster's sum of the rows of ``block`` labelled with it, in float64; rows
    also counted negatively in cluster ``removed_from[i]`` when that is given.

    The sums are one GEMM with a one-hot (or, with removals, a signed one-hot)
    matrix: ``np.add.at`` scatters row by row and took 330 ms per pass over
    70,000 x 784. Products of float32 blocks are widened before they are added up,
    so the sums of many blocks keep float64's digits.
    """
    columns = np.arange(block.shape[0])
    selection = np.zeros((n_clusters, block.shape[0]), dtype=block.dtype)
    selection[labels, columns] = 1.0
    if removed_from is not None:
        selection[removed_from, columns] = -1.0
    return (selection @ block).astype(np.float64, copy=False)


def _cluster_sums(X, labels, n_clusters):
    """Each cluster's sum of rows of ``X``, in float64, a block of rows at a time."""
    sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
    block_rows = _block_rows(X)
    for start in range(0, X.shape[0], block_rows):
        sums += _one_hot_sums(X[start:start + block_rows], labels[start:start + block_rows],
                              n_clusters)
    return sums


def _move_points(sums, X, points, sources, destinations):
    """Correct cluster ``sums`` in place for ``points`` that left clusters ``sources``
    for other clusters ``destinations``."""
    if points.size:
        sums += _one_hot_sums(X[points], destinations, sums.shape[0], removed_from=sources)


def _fill_empty_clusters(point_distances, labels, counts):
    """Give each empty cluster one point, in place: the farthest from its own center
    among points whose cluster keeps at least one other point. Returns the points
    moved and the clusters they left, as two integer arrays."""
    point_distances = point_distances.astype(np.float64)
    empty_clusters = np.flatnonzero(counts == 0)
    points = np.empty(empty_clusters.size, dtype=np.intp)
    sources = np.empty(empty_clusters.size, dtype=np.intp)
    for move, empty in enumerate(empty_clusters):
        movable = np.where(counts[labels] > 1, point_distances, -np.inf)
        points[move] = point = movable.argmax()
        sources[move] = labels[point]
        counts[labels[point]] -= 1
        labels[point], counts[empty] = empty, 1
        point_distances[point] = -np.inf
    return points, sources


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
    largest = largest_magnitude(X)
    if largest * largest * X.shape[1] > np.finfo(np.float64).max / 16:
        raise ValueError(
            f"X has values up to {largest:.3g}, too large for squared distances in float64; "
            "rescale the data (k-means labels do not change under a common scale factor)"
        )


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
    scale = power_of_two_scale(X, safe_range=SQUARED_DISTANCE_RANGE.get(X.dtype))
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
