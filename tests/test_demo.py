"""`npclust demo` end to end on the embedded digits, with the estimators shrunk for speed."""

import numpy as np
import pytest

from npclust import cli
from npclust import demo as saturation


@pytest.fixture
def small_estimators(monkeypatch):
    original = cli._make_estimator

    def small(method, n_clusters, seed, verbose, settings):
        fast = {"imsat": dict(hidden_dims=(64,), epochs=3),
                "dec": dict(hidden_dims=(32,), pretrain_epochs=2, max_iter=20),
                "idec": dict(hidden_dims=(32,), pretrain_epochs=2, max_iter=20),
                "kmeans": dict(n_init=1)}[method]
        return original(method, n_clusters, seed, verbose, {**fast, **settings})

    monkeypatch.setattr(cli, "_make_estimator", small)
    original_compare = saturation.compare_output_layers
    monkeypatch.setattr(saturation, "compare_output_layers",
                        lambda X, k, **kw: original_compare(X, k, epochs=3, hidden=32, **kw))


@pytest.mark.parametrize("method", ["imsat", "dec", "idec"])
def test_demo_prints_scores_next_to_kmeans_and_the_softmax_cap(small_estimators, capsys, method):
    assert cli.main(["demo", "--method", method, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "KMeans" in out and {"imsat": "IMSAT", "dec": "DEC", "idec": "IDEC"}[method] in out
    for column in ("ACC", "NMI", "ARI"):
        assert column in out
    assert "0.2320" in out and "0.8808" in out
    assert "sigmoid-fed softmax" in out and "linear logits" in out


def test_demo_shows_progress_unless_quiet(small_estimators, capsys):
    cli.main(["demo"])
    assert "epoch 3/3" in capsys.readouterr().err


def test_sigmoid_network_stays_under_its_cap_and_linear_passes_it():
    from npclust.datasets import make_blobs

    X, _ = make_blobs(n_samples=200, n_features=6, centers=4, random_state=0)
    confidence = saturation.compare_output_layers(X, 4, hidden=16, epochs=20, random_state=0)
    assert confidence["sigmoid"] <= confidence["cap"] + 1e-12
    assert confidence["linear"] > confidence["cap"]


@pytest.mark.parametrize("n_clusters, low, high, expected", [
    (2, -1.0, 1.0, np.e / (np.e + 1 / np.e)), (2, 0.0, 1.0, np.e / (np.e + 1)),
    (10, 0.0, 1.0, np.e / (np.e + 9)), (3, 0.0, 1000.0, 1.0),
])
def test_softmax_confidence_cap(n_clusters, low, high, expected):
    assert saturation.softmax_confidence_cap(n_clusters, low, high) == pytest.approx(expected,
                                                                                     rel=1e-12)
    logits = np.full(n_clusters, low)
    logits[0] = high
    reached = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert reached[0] == pytest.approx(expected, rel=1e-12)


def test_softmax_confidence_cap_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_clusters"):
        saturation.softmax_confidence_cap(1, 0.0, 1.0)
    with pytest.raises(ValueError, match="low"):
        saturation.softmax_confidence_cap(2, 1.0, 0.0)
