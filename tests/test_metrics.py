"""Tests for npclust.metrics: hand-computed cases always, scikit-learn parity when installed."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from npclust.metrics import (
    adjusted_rand_score,
    cluster_to_class_mapping,
    clustering_accuracy,
    contingency_matrix,
    mutual_info_score,
    normalized_mutual_info_score,
)

SYMMETRIC_SCORES = [mutual_info_score, normalized_mutual_info_score, adjusted_rand_score]
ALL_SCORES = SYMMETRIC_SCORES + [clustering_accuracy]

# The 2x2 case used below. y_true splits 6 samples 3/3, y_pred 2/4:
#
#              cluster 0   cluster 1
#   class 0        2           1
#   class 1        0           3
HAND_TRUE = [0, 0, 0, 1, 1, 1]
HAND_PRED = [0, 0, 1, 1, 1, 1]


def exact_ari(y_true, y_pred):
    """ARI from its defining formula in exact rational arithmetic (reference only)."""
    table, _, _ = contingency_matrix(y_true, y_pred)

    def pairs(counts):
        return sum(math.comb(int(c), 2) for c in np.ravel(counts))

    index, a, b = pairs(table), pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    n_all = math.comb(int(table.sum()), 2)
    expected = Fraction(a * b, n_all)
    return (index - expected) / (Fraction(a + b, 2) - expected)


def brute_force_accuracy(y_true, y_pred):
    """Accuracy maximised over every injective map of clusters into classes."""
    classes, clusters = sorted(set(y_true)), sorted(set(y_pred))
    best = 0
    slots = classes + [None] * len(clusters)  # None: the cluster is left unmatched
    for image in itertools.permutations(slots, len(clusters)):
        mapping = dict(zip(clusters, image))
        best = max(best, sum(mapping[p] == t for t, p in zip(y_true, y_pred)))
    return best / len(y_true)


# --------------------------------------------------------------------------- contingency


def test_contingency_matrix_with_negative_and_sparse_labels():
    table, classes, clusters = contingency_matrix([3, 3, -7, 3, -7], [10, -1, 10, 10, 10])
    np.testing.assert_array_equal(classes, [-7, 3])
    np.testing.assert_array_equal(clusters, [-1, 10])
    np.testing.assert_array_equal(table, [[0, 2], [1, 2]])
    assert table.dtype == np.int64


def test_contingency_matrix_with_string_labels():
    table, classes, clusters = contingency_matrix(["b", "a", "b"], ["x", "x", "y"])
    np.testing.assert_array_equal(classes, ["a", "b"])
    np.testing.assert_array_equal(clusters, ["x", "y"])
    np.testing.assert_array_equal(table, [[1, 0], [1, 1]])


# --------------------------------------------------------------------------- hand-computed


def test_hand_computed_accuracy():
    # Best matching: cluster 0 -> class 0 (2 samples), cluster 1 -> class 1 (3): 5 of 6.
    assert clustering_accuracy(HAND_TRUE, HAND_PRED) == pytest.approx(5 / 6, abs=1e-15)
    assert cluster_to_class_mapping(HAND_TRUE, HAND_PRED) == {0: 0, 1: 1}


def test_hand_computed_ari():
    # Pairs together in both: C(2,2) + C(3,2) = 4; in y_true: 2 C(3,2) = 6; in y_pred:
    # C(2,2) + C(4,2) = 7; all pairs N = C(6,2) = 15. Expected index 6 * 7 / 15 = 2.8,
    # maximum (6 + 7) / 2 = 6.5, so ARI = (4 - 2.8) / (6.5 - 2.8) = 12 / 37.
    assert adjusted_rand_score(HAND_TRUE, HAND_PRED) == pytest.approx(12 / 37, abs=1e-15)


def test_hand_computed_mi_and_nmi():
    # H(true) = log 2; H(pred) = log 3 - (2/3) log 2; cells 2, 1, 3 of 6 give
    # H(joint) = (1/2) log 3 + (2/3) log 2. MI = H(true) + H(pred) - H(joint)
    # = (1/2) log 3 - (1/3) log 2, and the mean entropy is (1/2) log 3 + (1/6) log 2,
    # so NMI = (3 log 3 - 2 log 2) / (3 log 3 + log 2) = 0.47870...
    log2, log3 = math.log(2), math.log(3)
    mi = 0.5 * log3 - log2 / 3
    nmi = (3 * log3 - 2 * log2) / (3 * log3 + log2)
    assert mutual_info_score(HAND_TRUE, HAND_PRED) == pytest.approx(mi, abs=1e-15)
    assert normalized_mutual_info_score(HAND_TRUE, HAND_PRED) == pytest.approx(nmi, abs=1e-15)
    assert nmi == pytest.approx(0.478704, abs=1e-6)


def test_independent_labelings():
    # Every cell holds one sample: MI = 0 exactly; pairs together in both = 0, in each
    # labeling 2, N = 6: ARI = (0 - 4/6) / (2 - 4/6) = -1/2.
    y_true, y_pred = [0, 0, 1, 1], [0, 1, 0, 1]
    assert adjusted_rand_score(y_true, y_pred) == -0.5
    assert normalized_mutual_info_score(y_true, y_pred) == pytest.approx(0.0, abs=1e-15)
    assert clustering_accuracy(y_true, y_pred) == 0.5


@pytest.mark.parametrize("score", [normalized_mutual_info_score, adjusted_rand_score])
def test_perfect_match_up_to_renaming_scores_exactly_one(score):
    y_true = np.array([0, 0, 1, 1, 2, 2, 2, 5])
    y_pred = np.array([7, 7, -3, -3, 0, 0, 0, 9])
    assert score(y_true, y_pred) == 1.0
    assert clustering_accuracy(y_true, y_pred) == 1.0


def test_single_cluster_conventions():
    # Both constant: nothing to distinguish, a perfect match (sklearn's convention).
    assert normalized_mutual_info_score([1, 1, 1], [4, 4, 4]) == 1.0
    assert adjusted_rand_score([1, 1, 1], [4, 4, 4]) == 1.0
    # One constant: MI = 0, so NMI = 0 however the other labeling is split.
    assert normalized_mutual_info_score([0, 0, 0, 0], [0, 1, 2, 3]) == 0.0
    assert normalized_mutual_info_score([0, 1, 1, 2], [3, 3, 3, 3]) == 0.0
    assert mutual_info_score([0, 1, 1, 2], [3, 3, 3, 3]) == 0.0
    assert adjusted_rand_score([0, 0, 0, 0], [0, 1, 2, 3]) == 0.0
    # All singletons on both sides: identical partitions again.
    assert adjusted_rand_score([0, 1, 2], [5, 6, 7]) == 1.0


def test_one_sample():
    for score in (normalized_mutual_info_score, adjusted_rand_score, clustering_accuracy):
        assert score([3], [8]) == 1.0
    assert mutual_info_score([3], [8]) == 0.0


# --------------------------------------------------------------------------- accuracy


def test_accuracy_with_more_clusters_than_classes():
    # Cluster 1 has no class left: its sample counts as wrong.
    y_true, y_pred = [0, 0, 0, 1, 1, 1], [0, 0, 1, 2, 2, 2]
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(5 / 6)
    assert cluster_to_class_mapping(y_true, y_pred) == {0: 0, 2: 1}
    # Singletons do not reach 1.0 (as cluster purity would).
    assert clustering_accuracy([0, 0, 1, 1], [0, 1, 2, 3]) == 0.5


def test_accuracy_with_fewer_clusters_than_classes():
    # Cluster 9 takes class 2 (3 samples); cluster 5 takes class 0 or 1 (2 samples).
    y_true, y_pred = [0, 0, 1, 1, 2, 2, 2], [5, 5, 5, 5, 9, 9, 9]
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(5 / 7)
    mapping = cluster_to_class_mapping(y_true, y_pred)
    assert mapping[9] == 2 and mapping[5] in (0, 1) and len(mapping) == 2


@pytest.mark.parametrize("seed", range(6))
def test_accuracy_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_classes, n_clusters = rng.integers(1, 5, size=2)
    y_true = rng.integers(0, n_classes, size=25).tolist()
    y_pred = rng.integers(0, n_clusters, size=25).tolist()
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(
        brute_force_accuracy(y_true, y_pred), abs=1e-15
    )


def test_mapping_relabels_clusters_to_reach_the_accuracy():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 4, size=200)
    y_pred = np.where(rng.random(200) < 0.8, (y_true + 2) % 4, rng.integers(0, 6, size=200))
    mapping = cluster_to_class_mapping(y_true, y_pred)
    relabelled = np.array([mapping.get(c, -1) for c in y_pred.tolist()])
    assert np.mean(relabelled == y_true) == clustering_accuracy(y_true, y_pred)
    assert len(set(mapping.values())) == len(mapping)  # one-to-one


# --------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("score", ALL_SCORES)
def test_symmetric(score):
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 5, size=300), rng.integers(0, 3, size=300)
    assert score(y_true, y_pred) == pytest.approx(score(y_pred, y_true), abs=1e-15)


@pytest.mark.parametrize("score", ALL_SCORES)
def test_invariant_to_renaming_labels(score):
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 6, size=400)
    y_pred = np.where(rng.random(400) < 0.6, y_true, rng.integers(0, 6, size=400))
    reference = score(y_true, y_pred)
    new_names = rng.permutation(6) * 11 - 30  # a permutation onto sparse, negative ids
    assert score(new_names[y_true], y_pred) == reference
    assert score(y_true, new_names[y_pred]) == reference
    assert score(y_true.astype(str), np.char.add("c", y_pred.astype(str))) == reference
    assert score(y_true.astype(np.float64), y_pred.astype(np.float32)) == reference


def test_boolean_labels():
    assert clustering_accuracy([True, True, False], [0, 0, 1]) == 1.0


# --------------------------------------------------------------------------- large n


def test_ari_large_n_does_not_overflow():
    # At n = 100,000 the products in ARI reach N**2 ~ 2.5e19 > int64 max (9.2e18).
    n = 100_000
    rng = np.random.default_rng(4)
    y_true = np.repeat([0, 1], n // 2)
    y_pred = np.where(rng.random(n) < 0.9, y_true, 1 - y_true)
    expected = exact_ari(y_true, y_pred)
    assert 0.5 < expected < 0.8
    assert adjusted_rand_score(y_true, y_pred) == pytest.approx(float(expected), rel=1e-14)
    # Everything in one cluster against a split: ARI is 0 exactly, whatever the size.
    assert adjusted_rand_score(np.zeros(n, dtype=int), y_true) == 0.0


def test_nmi_large_n_with_many_distinct_labels():
    # 70,000 distinct labels on each side: the dense table would need 39 GB.
    n = 70_000
    rng = np.random.default_rng(5)
    assert normalized_mutual_info_score(np.arange(n), rng.permutation(n)) == 1.0
    assert adjusted_rand_score(np.arange(n), rng.permutation(n)) == 1.0
    nmi = normalized_mutual_info_score(np.arange(n), rng.integers(0, 2, size=n))
    # MI = H(pred) ~ log 2, mean entropy ~ (log n + log 2) / 2.
    assert nmi == pytest.approx(2 * math.log(2) / (math.log(n) + math.log(2)), rel=1e-3)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("score", ALL_SCORES + [contingency_matrix])
def test_length_mismatch(score):
    with pytest.raises(ValueError, match="y_true and y_pred must have the same length, got 5 and 4"):
        score([0, 1, 0, 1, 0], [0, 1, 0, 1])


@pytest.mark.parametrize(
    "y_true, y_pred, error, message",
    [
        ([[0, 1], [1, 0]], [0, 1, 1, 0], ValueError, "y_true must be a 1-D array.*shape \\(2, 2\\)"),
        ([0, 1], 1, ValueError, "y_pred must be a 1-D array.*shape \\(\\)"),
        ([], [], ValueError, "empty"),
        ([0.0, np.nan, 1.0], [0, 1, 1], ValueError, "y_true contains NaN"),
        ([0, 1, 1], [0.0, np.inf, 1.0], ValueError, "y_pred contains NaN or infinite"),
        ([0, 1, 1], [0.0, 0.5, 1.0], ValueError, "non-integral float label 0.5"),
        (np.array([0, np.nan], dtype=object), [0, 1], ValueError, "y_true contains NaN"),
        ([0, 1], [1j, 2j], TypeError, "y_pred has dtype complex128"),
        (np.array([0, "a"], dtype=object), [0, 1], TypeError, "y_true mixes labels"),
    ],
)
def test_invalid_labels(y_true, y_pred, error, message):
    for score in ALL_SCORES:
        with pytest.raises(error, match=message):
            score(y_true, y_pred)


# --------------------------------------------------------------------------- scikit-learn


def labelings():
    """Pairs of labelings of many shapes, with negative and non-contiguous names."""
    rng = np.random.default_rng(6)
    cases = []
    for n, n_true, n_pred in [
        (1, 1, 1), (2, 2, 1), (7, 3, 5), (50, 2, 2), (200, 10, 4),
        (200, 3, 12), (1000, 10, 10), (3000, 50, 7), (500, 400, 400),
    ]:
        y_true = rng.integers(0, n_true, size=n) * 3 - 5
        y_pred = rng.integers(0, n_pred, size=n)
        cases.append((y_true, y_pred))
        # A noisy copy, so some cases score far from chance.
        noisy = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, n_pred, size=n))
        cases.append((y_true, noisy))
    y_true = rng.integers(0, 5, size=100)
    cases += [
        (y_true, y_true),
        (y_true, rng.permutation(10)[y_true]),
        (y_true, np.zeros(100, dtype=int)),
        (np.zeros(100, dtype=int), np.zeros(100, dtype=int)),
        (np.arange(100), np.arange(100)),
    ]
    return cases


@pytest.mark.parametrize(
    "ours, name",
    [
        (mutual_info_score, "mutual_info_score"),
        (normalized_mutual_info_score, "normalized_mutual_info_score"),
        (adjusted_rand_score, "adjusted_rand_score"),
    ],
)
def test_matches_sklearn(ours, name):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    theirs = getattr(sklearn_metrics, name)
    for y_true, y_pred in labelings():
        assert ours(y_true, y_pred) == pytest.approx(theirs(y_true, y_pred), abs=1e-10)


def test_contingency_matches_sklearn():
    sklearn_cluster = pytest.importorskip("sklearn.metrics.cluster")
    for y_true, y_pred in labelings():
        table, _, _ = contingency_matrix(y_true, y_pred)
        np.testing.assert_array_equal(table, sklearn_cluster.contingency_matrix(y_true, y_pred))


def test_large_n_matches_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 10, size=70_000)
    y_pred = np.where(rng.random(70_000) < 0.5, y_true, rng.integers(0, 12, size=70_000))
    assert adjusted_rand_score(y_true, y_pred) == pytest.approx(
        sklearn_metrics.adjusted_rand_score(y_true, y_pred), abs=1e-10
    )
    assert normalized_mutual_info_score(y_true, y_pred) == pytest.approx(
        sklearn_metrics.normalized_mutual_info_score(y_true, y_pred), abs=1e-10
    )
