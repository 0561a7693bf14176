"""Choosing the number of clusters without labels: stability across resamples, and silhouette.

:func:`scan_n_clusters` fits an estimator for every candidate ``k`` on several random
subsamples of the data and measures how much the partitions agree where the
subsamples overlap (the adjusted Rand index of each pair, Ben-Hur et al., 2002; Lange
et al., 2004). A ``k`` that matches structure in the data is found again from other
samples; a ``k`` that cuts a cluster in two, or merges two, cuts differently each
time. It also reports the silhouette of one fit on all the data, computed in the
space the estimator clusters in (its ``transform``, or the data for KMeans).

The suggested ``k`` is the one with the highest silhouette. Measured on blobs of
known ``k`` (``docs/methods.md``), the highest stability picks ``k = 2`` far too
often: a coarse split is found again from every subsample. Stability is reported as
a second opinion and for its spread. Both need clusters that are separated in the
estimator's space; on the digits the silhouette's peak is at 9, not 10.
"""

import numpy as np

from ..metrics import adjusted_rand_score
from ..validation import check_array, check_integer, check_random_state
from .kmeans import KMeans

__all__ = ["scan_n_clusters", "silhouette_score"]


def scan_n_clusters(estimator, X, n_clusters=range(2, 11), n_resamples=6, fraction=0.8,
                    random_state=None):
    """Stability and silhouette of ``estimator`` for each candidate number of clusters.

    Parameters
    ----------
    estimator : ClusteringEstimator
        Fitted as a fresh copy with each ``n_clusters`` (its other parameters kept).
    X : array_like of shape (n_samples, n_features)
    n_clusters : iterable of int, default=range(2, 11)
    n_resamples : int, default=6
        Subsamples per ``k``; every pair of them is compared.
    fraction : float in (0, 1), default=0.8
        Share of the samples in each subsample (drawn without replacement).
    random_state : None, int or numpy.random.Generator
        Seeds the subsamples and the fits.

    Returns
    -------
    rows : list of dict
        One per ``k``, in order: ``n_clusters``, ``stability`` (mean adjusted Rand
        index over the pairs of subsamples, on the samples both hold),
        ``stability_std``, ``silhouette`` (of one fit on all of ``X``).
    best : int
        The ``k`` with the highest silhouette (the smaller ``k`` on a tie): measured, it
        picks the true ``k`` far more often than the highest stability does (see
        ``docs/methods.md``).

    Raises
    ------
    ValueError
        Bad ``X``, fewer than 2 resamples, ``fraction`` outside (0, 1), or a ``k``
        the subsamples are too small for.
    """
    X = check_array(X, dtype=np.float64, min_samples=4)
    check_integer(n_resamples, "n_resamples", 2)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    candidates = [check_integer(k, "n_clusters", 2) for k in n_clusters]
    if not candidates:
        raise ValueError("n_clusters must name at least one candidate number of clusters")
    rng = check_random_state(random_state)
    n_samples = X.shape[0]
    size = int(round(fraction * n_samples))
    if max(candidates) > size:
        raise ValueError(f"n_clusters up to {max(candidates)} needs subsamples of at least that "
                         f"many samples; {fraction} of {n_samples} is {size}")
    subsamples = [np.sort(rng.choice(n_samples, size=size, replace=False))
                  for _ in range(n_resamples)]
    seeds = rng.integers(2**31, size=n_resamples + 1)
    rows = []
    for k in candidates:
        labelings = []
        for subsample, seed in zip(subsamples, seeds):
            labels = np.full(n_samples, -1)
            labels[subsample] = _refit(estimator, k, seed).fit_predict(X[subsample])
            labelings.append(labels)
        agreements = []
        for first in range(n_resamples):
            for second in range(first + 1, n_resamples):
                both = (labelings[first] >= 0) & (labelings[second] >= 0)
                agreements.append(adjusted_rand_score(labelings[first][both],
                                                      labelings[second][both]))
        model = _refit(estimator, k, seeds[-1]).fit(X)
        # k-means clusters the data itself; the deep methods cluster their embedding.
        space = X if isinstance(model, KMeans) else model.transform(X)
        rows.append({"n_clusters": k, "stability": float(np.mean(agreements)),
                     "stability_std": float(np.std(agreements)),
                     "silhouette": silhouette_score(space, model.labels_)})
    best = max(rows, key=lambda row: (row["silhouette"], -row["n_clusters"]))["n_clusters"]
    return rows, best


def _refit(estimator, n_clusters, seed):
    params = dict(estimator.get_params(), n_clusters=n_clusters, random_state=int(seed),
                  verbose=0)
    params.pop("checkpoint", None)
    return type(estimator)(**params)


def silhouette_score(X, labels, chunk_rows=1024):
    """Mean silhouette coefficient of ``labels`` on ``X`` (Euclidean distances).

    For each sample, ``a`` is its mean distance to the other members of its cluster and
    ``b`` the smallest mean distance to the members of another cluster; its
    silhouette is ``(b - a) / max(a, b)``, 0 for a sample alone in its cluster
    (Rousseeuw, 1987; scikit-learn's convention). Distances are computed in row
    chunks, so memory stays ``chunk_rows x n_samples``.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
    labels : array_like of shape (n_samples,)
        At least 2 and at most ``n_samples - 1`` distinct labels.
    chunk_rows : int, default=1024

    Returns
    -------
    float
        In [-1, 1]; higher means tighter, better separated clusters.
    """
    X = check_array(X, dtype=np.float64, min_samples=2)
    labels = np.asarray(labels)
    if labels.shape != (X.shape[0],):
        raise ValueError(f"labels must have shape ({X.shape[0]},), got {labels.shape}")
    clusters, codes = np.unique(labels, return_inverse=True)
    if not 2 <= len(clusters) <= X.shape[0] - 1:
        raise ValueError(f"silhouette needs 2 to n_samples - 1 clusters, got {len(clusters)}")
    sizes = np.bincount(codes)
    one_hot = np.zeros((X.shape[0], len(clusters)))
    one_hot[np.arange(X.shape[0]), codes] = 1.0
    squared_norms = np.einsum("ij,ij->i", X, X)
    values = np.empty(X.shape[0])
    for start in range(0, X.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        squared = squared_norms[rows, None] - 2.0 * X[rows] @ X.T + squared_norms[None, :]
        distance_sums = np.sqrt(np.maximum(squared, 0.0)) @ one_hot
        own = codes[rows]
        index = np.arange(len(own))
        # A sample's distance to itself is 0, so its own cluster's mean excludes it.
        a = distance_sums[index, own] / np.maximum(sizes[own] - 1, 1)
        distance_sums[index, own] = np.inf
        b = (distance_sums / sizes).min(axis=1)
        values[rows] = np.where(sizes[own] > 1, (b - a) / np.maximum(a, b), 0.0)
    return float(values.mean())
