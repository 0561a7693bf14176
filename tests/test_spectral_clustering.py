"""SpectralClustering: spectral_clustering's labels, a neighbour vote for new samples, the cut as score."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import npclust
from npclust.cli import main
from npclust.cluster import SpectralClustering, load
from npclust.cluster import spectral_clustering as module
from npclust.datasets import load_digits, make_blobs
from npclust.metrics import adjusted_rand_score, clustering_accuracy
from npclust.spectral import knn_affinity, normalized_cut, spectral_clustering


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=150, n_features=4, centers=3, cluster_std=1.5, random_state=2)
    return X, y


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _ = blobs
    return SpectralClustering(n_clusters=3, n_neighbors=8, random_state=0).fit(X)


def brute_force_neighbours(X, reference, k):
    """Indices of the k nearest reference rows by scipy's distances, nearest first."""
    return np.argsort(cdist(X, reference), axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def between(fitted, blobs):
    """Points between training samples of different clusters: mixed votes. (Not
    halfway: a midpoint is equally far from both ends, a tie scipy may order otherwise.)"""
    X, _ = blobs
    rng = np.random.default_rng(0)
    first, second = rng.integers(0, len(X), (2, 400))
    pairs = fitted.labels_[first] != fitted.labels_[second]
    weight = rng.uniform(0.3, 0.7, (pairs.sum(), 1))
    return weight * X[first[pairs]] + (1 - weight) * X[second[pairs]]


# ------------------------------------------------------------------------- fit
@pytest.mark.parametrize("params", [
    {},
    {"n_neighbors": 6, "scale_neighbor": 2},
    {"weights": "connectivity", "n_init": 3, "solver": "arpack"},
])
def test_labels_are_those_of_spectral_clustering(blobs, params):
    X, _ = blobs
    model = SpectralClustering(n_clusters=3, random_state=5, **params).fit(X)
    expected = spectral_clustering(X, 3, random_state=5, **params)
    np.testing.assert_array_equal(model.labels_, expected)
    assert model.embedding_.shape == (150, 3) and model.X_fit_.shape == (150, 4)
    np.testing.assert_allclose(np.linalg.norm(model.embedding_, axis=1), 1.0)


def test_objective_is_the_normalized_cut_of_the_training_graph(fitted, blobs):
    X, _ = blobs
    cut = normalized_cut(knn_affinity(X, 8), fitted.labels_)
    assert fitted.objective_ == pytest.approx(cut, rel=1e-12)
    entry, = fitted.history_
    assert entry["stage"] == "spectral" and entry["normalized_cut"] == fitted.objective_
    assert isinstance(fitted.n_iter_, int) and fitted.n_iter_ >= 1


def test_digits_with_default_parameters():
    X, y = load_digits()
    model = SpectralClustering(random_state=0).fit(X)
    # The measured value is 0.889 (README); a fall below 0.87 is a regression.
    assert clustering_accuracy(y, model.labels_) >= 0.87
    # A vote, not a replay of the fit: the samples whose neighbourhood is mostly in
    # another cluster move (5 of 1,797 with this seed).
    agreement = np.mean(model.predict(X) == model.labels_)
    assert 0.99 <= agreement < 1.0


def test_training_data_is_copied(blobs):
    X, _ = blobs
    X = X.copy()
    model = SpectralClustering(n_clusters=3, n_neighbors=8, random_state=0).fit(X)
    before = model.predict_proba(X[:20])
    X[:] = 0.0
    np.testing.assert_array_equal(model.predict_proba(model.X_fit_[:20]), before)
    assert not np.shares_memory(model.X_fit_, X)


# ------------------------------------------------------------------- the vote
def test_predict_proba_is_the_fraction_of_the_nearest_training_samples(fitted, blobs, between):
    X, _ = blobs
    neighbours = brute_force_neighbours(between, X, 8)
    expected = np.stack([np.bincount(row, minlength=3) / 8 for row in fitted.labels_[neighbours]])
    proba = fitted.predict_proba(between)
    np.testing.assert_array_equal(proba, expected)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.mean(proba.max(axis=1) < 1.0) > 0.2  # the votes are split, not unanimous
    # predict is the majority (no ties among 8 votes for 3 clusters here but 4-4 ones).
    counts = expected * 8
    untied = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) == 1
    np.testing.assert_array_equal(fitted.predict(between)[untied], proba[untied].argmax(axis=1))


def test_prediction_follows_the_fit_not_a_later_set_params(blobs, between):
    X, _ = blobs
    model = SpectralClustering(n_clusters=3, n_neighbors=8, random_state=0).fit(X)
    expected = {method: getattr(model, method)(between)
                for method in ("predict", "predict_proba", "transform")}
    model.set_params(n_neighbors=3, n_clusters=2)
    for method, values in expected.items():
        np.testing.assert_array_equal(getattr(model, method)(between), values, err_msg=method)


def test_a_training_sample_votes_for_itself():
    # Three tight groups on a line; with two neighbours the sample itself and its
    # nearest other sample vote.
    X = np.array([[0.0], [0.1], [0.25], [5.0], [5.1], [5.3], [10.0], [10.2], [10.3]])
    model = SpectralClustering(n_clusters=3, n_neighbors=2, random_state=0).fit(X)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    np.testing.assert_array_equal(model.predict_proba(X).max(axis=1), 1.0)


def test_a_tie_goes_to_the_nearest_neighbours_cluster():
    X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [10.0], [11.0], [12.0], [13.0], [14.0]])
    model = SpectralClustering(n_clusters=2, n_neighbors=2, random_state=0).fit(X)
    left, right = model.labels_[4], model.labels_[5]
    assert left != right
    # Each query's two nearest training samples are 4 and 10: one vote each.
    queries = np.array([[6.9], [7.1]])
    np.testing.assert_array_equal(model.predict_proba(queries), 0.5)
    np.testing.assert_array_equal(model.predict(queries), [left, right])
    # The argmax of the fractions takes the lowest index instead.
    assert list(model.predict_proba(queries).argmax(axis=1)) == [0, 0]


def test_n_clusters_equal_to_n_samples_predicts_each_sample_its_own_cluster():
    X = np.random.default_rng(5).standard_normal((6, 3))
    model = SpectralClustering(n_clusters=6, n_neighbors=3, random_state=0).fit(X)
    assert sorted(model.labels_) == list(range(6))
    # Three votes for three different clusters each time: the sample's own wins.
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_transform_is_the_mean_embedding_of_the_neighbours(fitted, blobs, between):
    X, _ = blobs
    neighbours = brute_force_neighbours(between, X, 8)
    np.testing.assert_allclose(fitted.transform(between),
                               fitted.embedding_[neighbours].mean(axis=1), rtol=1e-12)
    # On the training samples it stays near the embedding itself.
    assert np.mean(np.linalg.norm(fitted.transform(X) - fitted.embedding_, axis=1)) < 0.2


def test_outputs_follow_the_dtype(blobs):
    X, _ = blobs
    model = SpectralClustering(n_clusters=3, n_neighbors=8, dtype="float32",
                               random_state=0).fit(X)
    assert model.X_fit_.dtype == np.float32
    for output in (model.predict_proba(X), model.transform(X)):
        assert output.dtype == np.float32
    reference = SpectralClustering(n_clusters=3, n_neighbors=8, random_state=0).fit(X)
    # The same partition; k-means in float32 may number the clusters differently.
    assert adjusted_rand_score(model.labels_, reference.labels_) == 1.0


@pytest.mark.parametrize("dtype, scale", [("float32", 1e30), ("float32", 1e-30),
                                          ("float64", 1e160), ("float64", 1e-160)])
def test_any_finite_scale_gives_the_same_clusters(blobs, dtype, scale):
    X, _ = blobs
    X = X[:60]
    params = dict(n_clusters=3, n_neighbors=8, dtype=dtype, random_state=0)
    reference = SpectralClustering(**params).fit(X)
    model = SpectralClustering(**params).fit(X * scale)
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    np.testing.assert_array_equal(model.predict(X * scale), reference.predict(X))


# ---------------------------------------------------------------------- score
def test_score_against_a_hand_computed_cut():
    # Two groups far apart; with 2 neighbours new points vote for the group they lie in.
    X = np.array([[0.0], [1.1], [2.3], [3.6], [5.0], [20.0], [21.2], [22.5], [23.9], [25.4]])
    model = SpectralClustering(n_clusters=2, n_neighbors=2, random_state=0).fit(X)
    X_new = np.array([[0.0], [1.0], [3.0], [21.0]])
    labels = model.predict(X_new)
    assert labels[0] == labels[1] == labels[2] != labels[3]
    # The 2-nearest-neighbour graph of X_new: sigma is the distance to the 2nd
    # neighbour, (3, 2, 3, 20); edges 0-1, 0-2, 1-2 (each point's two nearest) and 3-2,
    # 3-1 (point 3's), weighted exp(-d^2 / (sigma_i sigma_j)).
    w01, w02, w12 = np.exp(-1 / 6), np.exp(-9 / 9), np.exp(-4 / 6)
    w23, w13 = np.exp(-324 / 60), np.exp(-400 / 40)
    cut = w23 + w13
    expected = cut / (2 * (w01 + w02 + w12) + cut) + cut / cut
    assert model.score(X_new) == pytest.approx(-expected, rel=1e-12)


def test_score_on_the_training_data_is_minus_the_objective(fitted, blobs):
    X, _ = blobs
    np.testing.assert_array_equal(fitted.predict(X), fitted.labels_)
    assert fitted.score(X) == pytest.approx(-fitted.objective_, rel=1e-12)


def test_score_prefers_the_right_number_of_clusters(blobs):
    X, _ = blobs
    three = SpectralClustering(n_clusters=3, n_neighbors=8, random_state=0).fit(X)
    six = SpectralClustering(n_clusters=6, n_neighbors=8, random_state=0).fit(X)
    assert three.score(X) > six.score(X)


def test_score_needs_more_samples_than_neighbours(fitted, blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="more than n_neighbors=8 samples; X has 8"):
        fitted.score(X[:8])


# ---------------------------------------------------------------- one cluster
def test_one_cluster_builds_no_graph(blobs, monkeypatch):
    X, _ = blobs

    def refuse(*args, **kwargs):
        raise AssertionError("no graph for one cluster")

    monkeypatch.setattr(module, "knn_affinity", refuse)
    model = SpectralClustering(n_clusters=1, random_state=0).fit(X)
    np.testing.assert_array_equal(model.labels_, 0)
    np.testing.assert_array_equal(model.predict_proba(X[:5]), np.ones((5, 1)))
    np.testing.assert_array_equal(model.transform(X[:5]), np.ones((5, 1)))
    assert model.objective_ == 0.0 and model.n_iter_ == 0 and model.history_ == []


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("params, error, message", [
    ({"n_neighbors": 20}, ValueError, r"n_neighbors must be in \[1, 19\] \(fewer than the 20"),
    ({"n_neighbors": 0}, ValueError, "n_neighbors must be in"),
    ({"n_neighbors": 2.0}, TypeError, "n_neighbors must be an integer"),
    ({"scale_neighbor": 11}, ValueError, r"scale_neighbor must be in \[1, 10\]"),
    ({"scale_neighbor": 0}, ValueError, "scale_neighbor"),
    ({"weights": "gaussian"}, ValueError, "unknown weights 'gaussian'.*connectivity"),
    ({"solver": "lobpcg"}, ValueError, "unknown solver 'lobpcg'.*arpack"),
    ({"n_init": 0}, ValueError, "n_init must be >= 1"),
])
def test_bad_parameters_are_named(params, error, message):
    X = np.random.default_rng(0).normal(size=(20, 3))
    model = SpectralClustering(n_clusters=2, **params)
    with pytest.raises(error, match=message):
        model.fit(X)
    assert not hasattr(model, "labels_")


# ------------------------------------------------------------ files and CLI
def test_save_and_load_round_trip(fitted, blobs, tmp_path):
    X, _ = blobs
    fitted.save(tmp_path / "model.npz")
    loaded = npclust.load(tmp_path / "model.npz")
    assert type(loaded) is SpectralClustering and loaded.get_params() == fitted.get_params()
    for name in ("labels_", "X_fit_", "embedding_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(fitted, name))
    X_new = X + 0.2
    for method in ("predict", "predict_proba", "transform"):
        np.testing.assert_array_equal(getattr(loaded, method)(X_new), getattr(fitted, method)(X_new))
    assert loaded.score(X_new) == fitted.score(X_new) and loaded.objective_ == fitted.objective_


def test_load_refuses_training_data_that_does_not_fit_the_labels(fitted, tmp_path):
    state = fitted.get_state()
    state["arrays"]["X_fit_"] = state["arrays"]["X_fit_"][:-1]
    with pytest.raises(ValueError, match="X_fit_ has shape"):
        SpectralClustering().set_state(state)


def test_command_line_fit_save_and_predict(blobs, tmp_path, capsys):
    X, _ = blobs
    np.save(tmp_path / "X.npy", X)
    status = main(["fit", str(tmp_path / "X.npy"), "--n-clusters", "3", "--method", "spectral",
                   "--set", "n_neighbors=8", "--save", str(tmp_path / "model.npz"),
                   "--output", str(tmp_path / "labels.csv")])
    assert status == 0
    assert "[spectral] run 1/1  normalized_cut" in capsys.readouterr().err
    model = load(tmp_path / "model.npz")
    assert type(model) is SpectralClustering and model.n_neighbors == 8
    labels = np.loadtxt(tmp_path / "labels.csv", skiprows=1, dtype=int)
    np.testing.assert_array_equal(labels, model.labels_)
    assert main(["predict", str(tmp_path / "model.npz"), str(tmp_path / "X.npy"),
                 "--output", str(tmp_path / "predicted.csv")]) == 0
    predicted = np.loadtxt(tmp_path / "predicted.csv", skiprows=1, dtype=int)
    np.testing.assert_array_equal(predicted, model.predict(X))


def test_score_builds_its_graph_with_the_fitted_scale_neighbour(blobs):
    X, _ = blobs
    model = SpectralClustering(n_clusters=3, n_neighbors=8, scale_neighbor=2, random_state=0).fit(X)
    X_new = X[::2]
    affinity = knn_affinity(X_new, 8, 2)
    assert model.score(X_new) == pytest.approx(
        -normalized_cut(affinity, model.predict(X_new)), rel=1e-12)
    # Not the default scale neighbour's graph, or the test could not tell them apart.
    assert normalized_cut(knn_affinity(X_new, 8), model.predict(X_new)) != pytest.approx(
        normalized_cut(affinity, model.predict(X_new)), rel=1e-6)


def test_one_neighbour_is_allowed(blobs):
    X, _ = blobs
    model = SpectralClustering(n_clusters=3, n_neighbors=1, random_state=0).fit(X)
    assert model.labels_.shape == (X.shape[0],)


def test_a_fixed_seed_gives_the_same_embedding_bit_for_bit():
    # Over 300 samples the eigensolver is ARPACK, whose start vector the seed draws.
    X, _ = make_blobs(n_samples=400, n_features=4, centers=3, random_state=2)
    first = SpectralClustering(n_clusters=3, random_state=0).fit(X)
    second = SpectralClustering(n_clusters=3, random_state=0).fit(X)
    np.testing.assert_array_equal(first.embedding_, second.embedding_)


def test_identical_samples_split_between_clusters_are_a_warning(blobs):
    import warnings

    from npclust.cluster import DegenerateResultWarning

    X = np.repeat(np.random.default_rng(0).standard_normal((3, 2)), 20, axis=0)
    with pytest.warns(DegenerateResultWarning,
                      match="identical samples in different clusters: X has 3 distinct samples "
                            "for n_clusters=5; use fewer clusters"):
        model = SpectralClustering(n_clusters=5, random_state=0).fit(X)
    assert np.unique(model.labels_).size == 5
    # Distinct samples, or copies kept together, give no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateResultWarning)
        SpectralClustering(n_clusters=3, random_state=0).fit(blobs[0])
        SpectralClustering(n_clusters=3, random_state=0).fit(X)
