"""External clustering metrics: compare a clustering with known class labels.

A clustering names its groups arbitrarily, so none of these scores may depend on which
integer (or string) a cluster is called: they are all functions of the contingency
table ``n_ij`` = number of samples of class ``i`` placed in cluster ``j``.

- :func:`clustering_accuracy` -- fraction of samples correct under the best one-to-one
  matching of clusters to classes (Hungarian algorithm), the "ACC" of the deep
  clustering literature (DEC, IDEC, IMSAT).
- :func:`normalized_mutual_info_score` -- mutual information divided by the arithmetic
  mean of the two entropies, natural log (scikit-learn's default).
- :func:`adjusted_rand_score` -- pair-counting agreement corrected for chance
  (Hubert & Arabie, 1985).

Labels may be integers of any sign and spacing, strings, booleans, or floats that hold
integral values; NaN and non-integral floats are rejected with a ``ValueError``. The
scores match :mod:`sklearn.metrics` (to rounding) without importing scikit-learn,
except that empty labelings are an error here rather than a perfect score.
"""

import numpy as np
from scipy.special import entr

__all__ = [
    "contingency_matrix",
    "cluster_to_class_mapping",
    "clustering_accuracy",
    "mutual_info_score",
    "normalized_mutual_info_score",
    "adjusted_rand_score",
]


def _check_labeling(labels, name):
    """Return `labels` as a 1-D ndarray after rejecting what cannot be a labeling."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {labels.shape}")
    kind = labels.dtype.kind
    if kind == "f":
        # NaN is not equal to itself, so np.unique would count every NaN as its own
        # cluster: a silently wrong score. Infinity is not a label either.
        if not np.isfinite(labels).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if (labels != np.floor(labels)).any():
            bad = labels[labels != np.floor(labels)][0].item()
            raise ValueError(
                f"{name} contains the non-integral float label {bad!r}; labels must be "
                "integers, strings or floats holding integral values"
            )
    elif kind == "O":
        # Object arrays (e.g. from pandas) may hide float NaNs among other values.
        if any(value != value for value in labels):
            raise ValueError(f"{name} contains NaN")
    elif kind not in "biuUS":
        raise TypeError(
            f"{name} has dtype {labels.dtype}; labels must be integers, strings "
            "or floats holding integral values"
        )
    return labels


def _check_labelings(y_true, y_pred):
    """Validate a pair of labelings of the same samples; return them as ndarrays."""
    y_true = _check_labeling(y_true, "y_true")
    y_pred = _check_labeling(y_pred, "y_pred")
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(
            "y_true and y_pred must have the same length, "
            f"got {y_true.shape[0]} and {y_pred.shape[0]}"
        )
    if y_true.shape[0] == 0:
        raise ValueError("y_true and y_pred are empty; at least one sample is needed")
    return y_true, y_pred


def _encode(labels, name):
    """Return (sorted unique labels, index of each sample's label in them)."""
    try:
        uniques, codes = np.unique(labels, return_inverse=True)
    except TypeError as exc:
        raise TypeError(f"{name} mixes labels that cannot be compared: {exc}") from None
    return uniques, codes.reshape(-1)


def _group_sizes(y_true, y_pred):
    """Sizes of the classes, of the clusters and of the non-zero contingency cells.

    Entropies, mutual information and pair counts need only these three multisets.
    There are at most n_samples non-zero cells, whereas the dense table can have
    n_samples**2 entries when both labelings have many distinct values.

    Returns
    -------
    class_sizes : ndarray of shape (n_classes,), int64
    cluster_sizes : ndarray of shape (n_clusters,), int64
    cell_sizes : ndarray of shape (n_nonzero_cells,), int64
    """
    y_true, y_pred = _check_labelings(y_true, y_pred)
    _, class_codes = _encode(y_true, "y_true")
    clusters, cluster_codes = _encode(y_pred, "y_pred")
    # One int64 key per (class, cluster) pair; n_classes * n_clusters <= n_samples**2
    # cannot overflow int64 for any array that fits in memory.
    keys = class_codes.astype(np.int64) * clusters.shape[0] + cluster_codes
    _, cell_sizes = np.unique(keys, return_counts=True)
    class_sizes = np.bincount(class_codes)
    cluster_sizes = np.bincount(cluster_codes)
    return (
        class_sizes.astype(np.int64, copy=False),
        cluster_sizes.astype(np.int64, copy=False),
        cell_sizes.astype(np.int64, copy=False),
    )


def contingency_matrix(y_true, y_pred):
    """Count how many samples of each class fall in each cluster.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels: integers (any sign, need not be contiguous), strings,
        booleans or integral floats.
    y_pred : array-like of shape (n_samples,)
        Cluster labels, same rules.

    Returns
    -------
    table : ndarray of shape (n_classes, n_clusters), int64
        ``table[i, j]`` is the number of samples with ``y_true == classes[i]`` and
        ``y_pred == clusters[j]``.
    classes : ndarray of shape (n_classes,)
        The distinct values of `y_true`, sorted; they label the rows.
    clusters : ndarray of shape (n_clusters,)
        The distinct values of `y_pred`, sorted; they label the columns.

    Raises
    ------
    ValueError
        If the labelings are not 1-D, differ in length, are empty, or hold NaN,
        infinite or non-integral float labels.

    Notes
    -----
    The table is dense, so its memory grows as ``n_classes * n_clusters``; the scores
    other than accuracy work from the non-zero cells only and have no such limit.

    Examples
    --------
    >>> from npclust.metrics import contingency_matrix
    >>> table, classes, clusters = contingency_matrix([0, 0, 1, 1], [-1, 5, 5, 5])
    >>> table
    array([[1, 1],
           [0, 2]])
    >>> clusters
    array([-1,  5])
    """
    y_true, y_pred = _check_labelings(y_true, y_pred)
    classes, class_codes = _encode(y_true, "y_true")
    clusters, cluster_codes = _encode(y_pred, "y_pred")
    shape = (classes.shape[0], clusters.shape[0])
    flat_index = class_codes.astype(np.int64) * shape[1] + cluster_codes
    table = np.bincount(flat_index, minlength=shape[0] * shape[1]).reshape(shape)
    return table.astype(np.int64, copy=False), classes, clusters


def _best_matching(y_true, y_pred):
    """Hungarian matching that maximises the number of correctly mapped samples."""
    table, classes, clusters = contingency_matrix(y_true, y_pred)
    # linear_sum_assignment accepts rectangular tables: it matches min(n_classes,
    # n_clusters) pairs and leaves the surplus rows or columns unmatched.
    # Imported here: scipy.optimize costs 0.2 s to import and only ACC needs it.
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(table, maximize=True)
    n_correct = int(table[rows, cols].sum())
    by_cluster = np.argsort(cols)
    rows, cols = rows[by_cluster], cols[by_cluster]
    return n_correct, int(table.sum()), classes[rows], clusters[cols]


def cluster_to_class_mapping(y_true, y_pred):
    """The one-to-one cluster-to-class mapping used by :func:`clustering_accuracy`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    mapping : dict
        ``{cluster_label: class_label}`` for every matched cluster, as Python scalars.
        When there are more clusters than classes the unmatched clusters are absent
        from the dict (all their samples count as wrong); when there are fewer, some
        classes are the image of no cluster.

    Examples
    --------
    Relabel the clusters to compare with the classes, e.g. for a confusion matrix;
    unmatched clusters get -1 here:

    >>> import numpy as np
    >>> from npclust.metrics import cluster_to_class_mapping
    >>> y_true = [0, 0, 1, 1, 2]
    >>> y_pred = [7, 7, 3, 3, 9]
    >>> mapping = cluster_to_class_mapping(y_true, y_pred)
    >>> mapping
    {3: 1, 7: 0, 9: 2}
    >>> np.array([mapping.get(c, -1) for c in y_pred])
    array([0, 0, 1, 1, 2])
    """
    _, _, matched_classes, matched_clusters = _best_matching(y_true, y_pred)
    return dict(zip(matched_clusters.tolist(), matched_classes.tolist()))


def clustering_accuracy(y_true, y_pred):
    """Unsupervised clustering accuracy under the best one-to-one label matching.

    ``ACC = max_m (1/n) sum_i [y_true_i == m(y_pred_i)]`` over one-to-one maps ``m``
    from clusters to classes. The maximum is a linear assignment problem on the
    contingency table, solved exactly by :func:`scipy.optimize.linear_sum_assignment`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Cluster labels; their number may differ from the number of classes.

    Returns
    -------
    accuracy : float
        In [0, 1]; 1.0 exactly when the clustering equals the classes up to renaming.

    Notes
    -----
    The map is one-to-one, so surplus clusters cannot share a class: with more
    clusters than classes the samples of unmatched clusters count as wrong, and
    splitting the data into singletons does not score 1.0 (unlike cluster purity, which
    maps many clusters to one class). With fewer clusters than classes, the samples of
    classes no cluster maps to count as wrong.

    Examples
    --------
    >>> from npclust.metrics import clustering_accuracy
    >>> clustering_accuracy([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    >>> clustering_accuracy([0, 0, 0, 0], [0, 1, 2, 3])
    0.25
    """
    n_correct, n_samples, _, _ = _best_matching(y_true, y_pred)
    return n_correct / n_samples


def _entropy(sizes, n_samples):
    """Entropy in nats of the distribution ``sizes / n_samples``.

    The sizes are sorted first so the float sum does not depend on how the groups are
    named: a labeling and any renaming of it get bit-identical entropies, which makes
    a perfect match score exactly 1.0 and NMI exactly symmetric.
    """
    return float(entr(np.sort(sizes) / n_samples).sum())


def _mutual_info(class_sizes, cluster_sizes, cell_sizes):
    """Mutual information in nats, ``H(classes) + H(clusters) - H(joint)``, and the
    two marginal entropies.

    Written with entropies, which entr() makes exact at zero without an epsilon; the
    joint entropy comes from the non-zero cells only.
    """
    n_samples = class_sizes.sum()
    h_true = _entropy(class_sizes, n_samples)
    h_pred = _entropy(cluster_sizes, n_samples)
    h_joint = _entropy(cell_sizes, n_samples)
    # MI >= 0 exactly; rounding can leave -1e-17 for independent labelings.
    return max(h_true + h_pred - h_joint, 0.0), h_true, h_pred


def mutual_info_score(y_true, y_pred):
    """Mutual information between two labelings of the same samples, in nats.

    ``MI = sum_ij (n_ij / n) log(n n_ij / (a_i b_j))`` with ``a_i``, ``b_j`` the class
    and cluster sizes, summed over the non-zero cells of the contingency table. It is
    evaluated as ``H(y_true) + H(y_pred) - H(y_true, y_pred)``, the same quantity, so
    that renamings and nested labelings give exact results.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    mi : float
        Non-negative, symmetric in its arguments, at most the smaller of the two
        entropies; 0.0 when either labeling has a single value.

    Examples
    --------
    >>> import numpy as np
    >>> from npclust.metrics import mutual_info_score
    >>> bool(np.isclose(mutual_info_score([0, 0, 1, 1], [5, 5, 2, 2]), np.log(2)))
    True
    """
    mi, _, _ = _mutual_info(*_group_sizes(y_true, y_pred))
    return mi


def normalized_mutual_info_score(y_true, y_pred):
    """Mutual information normalised by the arithmetic mean of the two entropies.

    ``NMI = MI / ((H(y_true) + H(y_pred)) / 2)``, natural log; scikit-learn's default
    (``average_method="arithmetic"``).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    nmi : float
        In [0, 1] and symmetric in its arguments. The ratio is 0/0 when both labelings
        have a single value; they then agree perfectly and the score is 1.0. When
        exactly one of them has a single value the MI is 0 and so is the score.
        Both conventions are scikit-learn's.

    Examples
    --------
    >>> from npclust.metrics import normalized_mutual_info_score
    >>> normalized_mutual_info_score([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    >>> normalized_mutual_info_score([0, 0, 0, 0], [0, 1, 2, 3])
    0.0
    """
    class_sizes, cluster_sizes, cell_sizes = _group_sizes(y_true, y_pred)
    n_classes, n_clusters = class_sizes.shape[0], cluster_sizes.shape[0]
    if n_classes == 1 and n_clusters == 1:
        return 1.0
    if n_classes == 1 or n_clusters == 1:
        return 0.0
    mi, h_true, h_pred = _mutual_info(class_sizes, cluster_sizes, cell_sizes)
    return mi / (0.5 * (h_true + h_pred))


def _n_pairs(sizes):
    """Sum of C(s, 2) over `sizes`, as a Python int (exact, cannot overflow later)."""
    # s * (s - 1) fits int64 for s < 3e9 samples, and so does the sum, which is at most
    # C(n_samples, 2).
    return int((sizes * (sizes - 1) // 2).sum())


def adjusted_rand_score(y_true, y_pred):
    """Rand index adjusted for chance (Hubert & Arabie, 1985).

    With ``index = sum_ij C(n_ij, 2)`` (pairs together in both labelings),
    ``a = sum_i C(a_i, 2)``, ``b = sum_j C(b_j, 2)`` and ``N = C(n, 2)``::

        ARI = (index - a b / N) / ((a + b) / 2 - a b / N)

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth class labels.
    y_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    ari : float
        At most 1.0, about 0.0 for random labelings, negative for worse than chance;
        symmetric in its arguments. The denominator vanishes only when the two
        labelings are identical up to renaming with all samples together (both a
        single cluster) or all apart (both all singletons); such a perfect match
        scores 1.0, as in scikit-learn.

    Notes
    -----
    The formula is multiplied through by ``N`` and evaluated in Python integers: the
    products reach ``N**2``, about ``n**4 / 4`` (6e18 at n = 70,000, past the int64
    range from n = 74,000, and past exact float64 integers long before), so only the
    final division rounds.

    Examples
    --------
    >>> from npclust.metrics import adjusted_rand_score
    >>> adjusted_rand_score([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    >>> adjusted_rand_score([0, 0, 1, 1], [0, 1, 0, 1])
    -0.5
    """
    class_sizes, cluster_sizes, cell_sizes = _group_sizes(y_true, y_pred)
    index = _n_pairs(cell_sizes)
    pairs_true = _n_pairs(class_sizes)
    pairs_pred = _n_pairs(cluster_sizes)
    if index == pairs_true == pairs_pred:
        # Identical partitions; this is also the only case where the formula is 0/0.
        return 1.0
    n_samples = int(class_sizes.sum())
    n_all_pairs = n_samples * (n_samples - 1) // 2
    numerator = 2 * (index * n_all_pairs - pairs_true * pairs_pred)
    denominator = (pairs_true + pairs_pred) * n_all_pairs - 2 * pairs_true * pairs_pred
    return numerator / denominator
