"""The estimator contract of IMSAT, DEC, IDEC, KMeans and SpectralClustering, on small fast settings."""

import numpy as np
import pytest

from npclust.cluster import DEC, IDEC, IMSAT, KMeans, SpectralClustering
from npclust.datasets import make_blobs
from npclust.metrics import adjusted_rand_score
from npclust.validation import NotFittedError

_FAST_SETTINGS = {
    "imsat": (IMSAT, dict(hidden_dims=(32,), epochs=15, batch_size=50, n_neighbors=5)),
    "dec": (DEC, dict(hidden_dims=(32,), latent_dim=2, pretrain_epochs=15, pretrain_batch_size=32,
                      max_iter=60, update_interval=10, batch_size=64, kmeans_n_init=3)),
    "idec": (IDEC, dict(hidden_dims=(32,), latent_dim=2, pretrain_epochs=15,
                        pretrain_batch_size=32, max_iter=60, update_interval=10, batch_size=64,
                        kmeans_n_init=3)),
    "kmeans": (KMeans, dict(n_init=3)),
    "spectral": (SpectralClustering, dict(n_init=3)),
}


def _fast(name):
    estimator, settings = _FAST_SETTINGS[name]
    return lambda **overrides: estimator(n_clusters=3, **{**settings, **overrides})


FAST = {name: _fast(name) for name in _FAST_SETTINGS}


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=240, n_features=4, centers=3, cluster_std=0.5, random_state=3)
    # Deep models train best on inputs of unit scale.
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X, y


@pytest.fixture(scope="module")
def fitted(blobs):
    X, y = blobs
    return {name: factory(random_state=0).fit(X, y) for name, factory in FAST.items()}


@pytest.mark.parametrize("name", FAST)
def test_recovers_separated_blobs(fitted, blobs, name):
    _, y = blobs
    assert adjusted_rand_score(y, fitted[name].labels_) >= 0.95


@pytest.mark.parametrize("name", FAST)
def test_fitted_attributes_and_outputs(fitted, blobs, name):
    X, _ = blobs
    model = fitted[name]
    assert model.n_features_in_ == 4
    assert model.labels_.shape == (240,)
    assert isinstance(model.n_iter_, int) and model.n_iter_ >= 1
    assert model.history_ and all("stage" in entry for entry in model.history_)
    # y was given, so the history carries the monitoring scores.
    assert any("acc" in entry and "nmi" in entry for entry in model.history_)
    proba = model.predict_proba(X)
    assert proba.shape == (240, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(proba >= 0)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    assert model.transform(X).shape[0] == 240
    assert np.all(np.bincount(model.labels_, minlength=3) > 0)


@pytest.mark.parametrize("name", FAST)
def test_same_seed_gives_identical_fit(blobs, name):
    X, _ = blobs
    first = FAST[name](random_state=7).fit(X)
    second = FAST[name](random_state=7).fit(X)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    np.testing.assert_array_equal(first.transform(X), second.transform(X))


@pytest.mark.parametrize("name", ["imsat", "dec"])
def test_different_seeds_give_different_weights(blobs, name):
    X, _ = blobs
    first = FAST[name](random_state=1).fit(X)
    second = FAST[name](random_state=2).fit(X)
    assert not np.array_equal(first.transform(X), second.transform(X))


@pytest.mark.parametrize("name", FAST)
def test_predict_before_fit(name):
    with pytest.raises(NotFittedError, match="not fitted"):
        FAST[name]().predict(np.zeros((3, 4)))
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


@pytest.mark.parametrize("name", FAST)
def test_feature_count_mismatch_names_both_counts(fitted, name):
    with pytest.raises(ValueError, match=r"5.*4|4.*5"):
        fitted[name].predict(np.zeros((2, 5)))


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("params, message", [
    ({"n_clusters": 0}, "n_clusters"),
    ({"n_clusters": 1000}, "n_clusters"),
    ({"n_clusters": 2.5}, "n_clusters"),
])
def test_invalid_cluster_counts(blobs, name, params, message):
    X, _ = blobs
    with pytest.raises((ValueError, TypeError), match=message):
        FAST[name]().set_params(**params).fit(X)


@pytest.mark.parametrize("estimator, params", [
    (IMSAT, {"lr": 0}), (IMSAT, {"epochs": 0}), (IMSAT, {"batch_size": -1}),
    (IMSAT, {"hidden_dims": (0,)}), (IMSAT, {"dtype": "int8"}),
    (DEC, {"lr": -1.0}), (DEC, {"tol": 2.0}), (DEC, {"pretrain_epochs": 0}),
    (DEC, {"corruption": 1.0}), (IDEC, {"gamma": 0}), (KMeans, {"n_init": 0}),
    (SpectralClustering, {"n_neighbors": 240}), (SpectralClustering, {"weights": "rbf"}),
])
def test_invalid_hyper_parameters_are_named(blobs, estimator, params):
    X, _ = blobs
    (name,) = params
    with pytest.raises((ValueError, TypeError), match=name):
        estimator(n_clusters=3).set_params(**params).fit(X)


def test_set_params_rejects_unknown_names_listing_valid_ones():
    with pytest.raises(ValueError, match="valid parameters are.*n_clusters"):
        IMSAT().set_params(n_cluster=3)


@pytest.mark.parametrize("estimator", [IMSAT, DEC, IDEC, KMeans, SpectralClustering])
def test_get_params_round_trip_and_repr(estimator):
    model = estimator(n_clusters=4, random_state=3)
    clone = estimator(**model.get_params())
    assert clone.get_params() == model.get_params()
    assert repr(model) == f"{estimator.__name__}(n_clusters=4, random_state=3)"


def test_fit_predict_equals_labels(blobs):
    X, _ = blobs
    model = FAST["kmeans"](random_state=0)
    np.testing.assert_array_equal(model.fit_predict(X), model.labels_)


def test_integer_and_list_input_is_converted(blobs):
    X, _ = blobs
    as_list = np.round(X * 10).astype(int).tolist()
    model = FAST["kmeans"](random_state=0).fit(as_list)
    assert model.labels_.shape == (240,)


def test_dec_tol_stops_training(blobs):
    X, _ = blobs
    # Every label change fraction is below 1.0, so training stops at the first
    # comparison of two target updates.
    model = FAST["dec"](random_state=0, tol=1.0).fit(X)
    assert model.n_iter_ == model.update_interval
    stopped = FAST["dec"](random_state=0, tol=0.0, max_iter=40).fit(X)
    assert stopped.n_iter_ == 40


def test_dec_history_records_label_changes(fitted):
    cluster = [entry for entry in fitted["dec"].history_ if entry["stage"] == "cluster"]
    assert cluster and all(0.0 <= entry["delta_label"] <= 1.0 for entry in cluster)
    assert [entry["stage"] for entry in fitted["dec"].history_][:15] == ["pretrain"] * 15


def test_dec_label_changes_are_counted_since_the_previous_target_update(blobs):
    # tol=0 never stops early. The labels of separated blobs settle: from one target
    # update to the next, none changes (each update compares with the one before it).
    X, _ = blobs
    model = FAST["dec"](random_state=0, tol=0.0, max_iter=30).fit(X)
    changes = [entry["delta_label"] for entry in model.history_ if entry["stage"] == "cluster"]
    assert changes == [0.0, 0.0, 0.0]


def test_idec_gamma_weighs_the_clustering_term(fitted):
    model = fitted["idec"]
    for entry in (e for e in model.history_ if e["stage"] == "cluster"):
        assert entry["loss"] == pytest.approx(entry["reconstruction"] + model.gamma * entry["kl"])


def test_dec_leaves_the_decoder_as_pretrained_and_idec_trains_it(blobs):
    X, _ = blobs
    dec = FAST["dec"](random_state=0, max_iter=10, update_interval=10)
    idec = FAST["idec"](random_state=0, max_iter=10, update_interval=10)
    pretrained_only = FAST["dec"](random_state=0, max_iter=1, update_interval=1, tol=0.0)
    for model in (dec, idec, pretrained_only):
        model.fit(X)
    # Same seed: identical pretraining; only IDEC changes the decoder afterwards.
    before = pretrained_only.decoder_.state_dict()
    for key, value in dec.decoder_.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert any(not np.array_equal(value, before[key])
               for key, value in idec.decoder_.state_dict().items())


def test_imsat_is_confident_with_linear_logits(fitted, blobs):
    X, _ = blobs
    assert fitted["imsat"].predict_proba(X).max(axis=1).mean() > 0.9


def test_float64_fit(blobs):
    X, y = blobs
    model = FAST["imsat"](random_state=0, dtype="float64").fit(X)
    assert model.predict_proba(X).dtype == np.float64
    assert adjusted_rand_score(y, model.labels_) >= 0.95


def test_verbose_prints_progress_to_stderr(blobs, capsys):
    X, _ = blobs
    FAST["imsat"](random_state=0, verbose=1, epochs=2).fit(X)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "epoch 2/2" in captured.err and "elapsed" in captured.err and "remaining" in captured.err
    assert f"k-th neighbour distances (k = 5) of {len(X)} samples" in captured.err


def test_predict_in_chunks_matches_whole(fitted, blobs, monkeypatch):
    from npclust.cluster import base

    X, _ = blobs
    whole = fitted["imsat"].predict_proba(X)
    monkeypatch.setattr(base, "PREDICT_CHUNK_ROWS", 7)
    np.testing.assert_allclose(fitted["imsat"].predict_proba(X), whole, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("init", ["spectral", "spectral_input"])
@pytest.mark.parametrize("estimator", [DEC, IDEC])
def test_spectral_init_starts_each_center_at_the_mean_code_of_its_spectral_cluster(
        estimator, init, monkeypatch):
    from npclust.cluster import dec as dec_module
    from npclust.cluster.training import Run

    # Codes and inputs with different cluster structure, so which one was clustered shows.
    codes, _ = make_blobs(n_samples=90, n_features=2, centers=3, random_state=3)
    X, _ = make_blobs(n_samples=90, n_features=4, centers=3, random_state=4)
    seen = {}
    original = dec_module.spectral_clustering

    def recording(features, n_clusters, **kwargs):
        seen["features"] = features
        seen["labels"] = original(features, n_clusters, **kwargs)
        return seen["labels"]

    monkeypatch.setattr(dec_module, "spectral_clustering", recording)
    monkeypatch.setattr(dec_module, "evaluate", lambda encoder, X: codes)
    model = estimator(n_clusters=3, hidden_dims=(8,), latent_dim=2, init=init, dtype="float64")
    run = Run(model._build_model(4, np.random.default_rng(0)), X, None,
              np.random.default_rng(0), {})
    _, labels, _ = model._initial_centers(run)
    np.testing.assert_array_equal(seen["features"], X if init == "spectral_input" else codes)
    np.testing.assert_array_equal(labels, seen["labels"])
    assert set(labels) == {0, 1, 2}
    np.testing.assert_allclose(run.model["centers"].data,
                               np.stack([codes[labels == j].mean(axis=0) for j in range(3)]))


def test_spectral_init_fits_end_to_end():
    X, _ = make_blobs(n_samples=90, n_features=4, centers=3, random_state=3)
    model = DEC(n_clusters=3, hidden_dims=(8,), latent_dim=2, pretrain_epochs=2, max_iter=5,
                update_interval=5, init="spectral", random_state=0).fit(X)
    assert set(model.labels_) <= {0, 1, 2} and model.get_params()["init"] == "spectral"


def test_unknown_init_is_refused_naming_the_options():
    with pytest.raises(ValueError, match="init.*kmeans.*spectral.*spectral_input"):
        DEC(n_clusters=2, init="random").fit(np.random.default_rng(0).normal(size=(20, 3)))


def test_kmeans_history_and_progress_line(capsys):
    X, _ = make_blobs(n_samples=60, n_features=2, centers=3, random_state=0)
    model = KMeans(n_clusters=3, random_state=0, verbose=1).fit(X)
    assert model.history_ == [{"stage": "kmeans", "epoch": 1, "inertia": model.inertia_,
                               "elapsed": model.history_[0]["elapsed"]}]
    assert "[kmeans] run 1/1  inertia " in capsys.readouterr().err


def test_a_negative_mu_is_refused_by_name():
    X, _ = make_blobs(n_samples=30, n_features=2, centers=3, random_state=0)
    with pytest.raises(ValueError, match=r"^mu must be"):
        IMSAT(n_clusters=3, mu=-1.0).fit(X)
