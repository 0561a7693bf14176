"""``score`` is each method's own objective, negated; ``n_clusters=1`` is the trivial clustering."""

import numpy as np
import pytest

from npclust.cluster import DEC, IDEC, IMSAT, KMeans, SpectralClustering, training
from npclust.datasets import make_blobs

FAST = {
    IMSAT: dict(hidden_dims=(8,), epochs=2, n_neighbors=3, batch_size=32),
    DEC: dict(hidden_dims=(8,), latent_dim=2, pretrain_epochs=2, max_iter=10, update_interval=5,
              kmeans_n_init=1),
    IDEC: dict(hidden_dims=(8,), latent_dim=2, pretrain_epochs=2, max_iter=10,
               update_interval=5, kmeans_n_init=1),
    KMeans: dict(n_init=2),
    SpectralClustering: dict(n_neighbors=5, n_init=2),
}


@pytest.fixture(scope="module")
def data():
    X, _ = make_blobs(n_samples=60, n_features=3, centers=3, random_state=0)
    return X


@pytest.mark.parametrize("estimator", list(FAST), ids=lambda cls: cls.__name__)
def test_score_on_the_training_data_is_the_negated_objective(data, estimator):
    model = estimator(n_clusters=3, random_state=0, **FAST[estimator]).fit(data)
    objective = model.inertia_ if estimator is KMeans else model.objective_
    assert model.score(data) == pytest.approx(-objective, rel=1e-5, abs=1e-6)


def test_kmeans_score_is_minus_the_summed_squared_distance_to_the_nearest_center(data):
    model = KMeans(n_clusters=3, random_state=0).fit(data)
    X_new = data[:7] + 0.5
    nearest = ((X_new[:, None, :] - model.cluster_centers_[None]) ** 2).sum(axis=2).min(axis=1)
    assert model.score(X_new) == pytest.approx(-nearest.sum(), rel=1e-12)


def test_score_ranks_a_better_imsat_above_a_worse_one(data):
    # An untrained network's predictions are neither confident nor balanced.
    trained = IMSAT(n_clusters=3, random_state=0, **dict(FAST[IMSAT], epochs=15)).fit(data)
    untrained = IMSAT(n_clusters=3, random_state=0, **dict(FAST[IMSAT], epochs=1, lr=1e-9))
    assert trained.score(data) > untrained.fit(data).score(data)


@pytest.mark.parametrize("estimator", list(FAST), ids=lambda cls: cls.__name__)
def test_one_cluster_holds_every_sample_without_training(data, estimator, monkeypatch):
    trained = []
    monkeypatch.setattr(training.Progress, "record", lambda self, label, *args: (
        trained.append(label), {})[1])
    model = estimator(n_clusters=1, random_state=0, **FAST[estimator]).fit(data)
    np.testing.assert_array_equal(model.labels_, np.zeros(len(data)))
    np.testing.assert_array_equal(model.predict(data[:5]), np.zeros(5))
    np.testing.assert_array_equal(model.predict_proba(data[:5]), np.ones((5, 1)))
    # Nothing is trained: at most DEC's one center, the mean code (one k-means run).
    assert set(trained) <= {"kmeans init", "kmeans"}
    if estimator is IMSAT:
        assert model.vat_radius_ is None  # no neighbour search either
