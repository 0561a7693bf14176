"""Choosing the number of clusters: silhouette (against a hand case and scikit-learn) and the scan."""

import numpy as np
import pytest

from npclust.cli import main
from npclust.cluster import KMeans, scan_n_clusters
from npclust.cluster.selection import silhouette_score
from npclust.datasets import make_blobs


def test_silhouette_of_a_hand_computed_case():
    X = np.array([[0.0], [1.0], [10.0], [11.0], [30.0]])
    labels = [0, 0, 1, 1, 2]
    # Point 0: a = 1, b = mean(10, 11) = 10.5; point 2: a = 1, b = mean(10, 9) = 9.5; point 4
    # is alone in its cluster: 0 by convention.
    expected = [(10.5 - 1) / 10.5, (9.5 - 1) / 9.5, (9.5 - 1) / 9.5, (10.5 - 1) / 10.5, 0.0]
    assert silhouette_score(X, labels) == pytest.approx(np.mean(expected), rel=1e-12)


@pytest.mark.parametrize("chunk_rows", [1, 7, 1024])
def test_silhouette_matches_scikit_learn(chunk_rows):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    labels = rng.integers(0, 4, size=60)
    labels[0] = 9  # a cluster of one
    assert silhouette_score(X, labels, chunk_rows=chunk_rows) == pytest.approx(
        sklearn_metrics.silhouette_score(X, labels), rel=1e-8)  # distances by GEMM expansion


def test_silhouette_refuses_one_cluster_or_mismatched_labels():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="2 to n_samples - 1"):
        silhouette_score(X, [0, 0, 0, 0])
    with pytest.raises(ValueError, match="shape"):
        silhouette_score(X, [0, 1])


def test_scan_suggests_the_number_of_well_separated_blobs():
    X, _ = make_blobs(n_samples=240, n_features=3, centers=3, cluster_std=0.5, random_state=2)
    rows, best = scan_n_clusters(KMeans(n_init=2), X, range(2, 6), n_resamples=3, random_state=0)
    assert [row["n_clusters"] for row in rows] == [2, 3, 4, 5]
    assert best == 3
    three = rows[1]
    assert three["stability"] == pytest.approx(1.0) and three["stability_std"] == pytest.approx(0.0)
    assert three["silhouette"] == max(row["silhouette"] for row in rows)


@pytest.mark.parametrize("kwargs, message", [
    (dict(fraction=1.0), "fraction"),
    (dict(n_resamples=1), "n_resamples"),
    (dict(n_clusters=[2, 40]), "subsamples"),
    (dict(n_clusters=[]), "at least one"),
])
def test_scan_refuses_bad_arguments(kwargs, message):
    X = np.random.default_rng(0).normal(size=(40, 2))
    with pytest.raises(ValueError, match=message):
        scan_n_clusters(KMeans(), X, **kwargs)


def test_scan_command_prints_the_table_and_the_suggestion(tmp_path, capsys):
    centers = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]])
    X, _ = make_blobs(n_samples=200, centers=centers, cluster_std=0.5, random_state=1)
    path = tmp_path / "X.npy"
    np.save(path, X)
    assert main(["scan", str(path), "--n-clusters", "2:6", "--resamples", "2",
                 "--set", "n_init=2"]) == 0
    out = capsys.readouterr().out
    assert ("suggested number of clusters: 4 (highest silhouette; see docs/methods.md for how "
            "often that is right)") in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 5
    # The suggested row, and only it, is marked.
    assert [row.split()[0] for row in rows if row.endswith("  <- suggested")] == ["4"]
    assert main(["scan", str(path), "--n-clusters", "two:six"]) == 2
    assert "FIRST:LAST" in capsys.readouterr().err


def test_scan_command_tries_2_to_15_clusters_unless_told(tmp_path, capsys):
    X, _ = make_blobs(n_samples=60, centers=3, random_state=0)
    path = tmp_path / "X.npy"
    np.save(path, X)
    assert main(["scan", str(path), "--resamples", "2", "--set", "n_init=1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(row.split()[0]) for row in rows] == list(range(2, 16))
