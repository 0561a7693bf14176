"""Estimator state after ``set_params``, degenerate results, and scale-safe k-means.

The rule (scikit-learn's): fitted attributes describe the last fit. ``set_params``
after ``fit`` changes what the *next* fit does; ``predict``, ``predict_proba``,
``transform`` and ``save`` keep following the last fit, and the saved file loads and
predicts exactly as the object did.
"""

import numpy as np
import pytest
from small_estimators import SETTINGS

from npclust.cluster import IMSAT, KMeans, load

# Changes that alter the model's structure or its prediction formula.
CHANGES = {
    "imsat": dict(n_clusters=5, hidden_dims=(9, 7), dtype="float64"),
    "dec": dict(n_clusters=5, hidden_dims=(9,), latent_dim=3, alpha=7.0, dtype="float64"),
    "idec": dict(n_clusters=2, hidden_dims=(9,), dtype="float64"),
    "kmeans": dict(n_clusters=5, dtype="float32"),
    "spectral": dict(n_clusters=5, n_neighbors=3, weights="connectivity", dtype="float32"),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(center, 0.3, (40, 4)) for center in (-2, 0, 2)])
    return X.astype(np.float32)


def make(name):
    cls, settings = SETTINGS[name]
    return cls(n_clusters=3, random_state=0, **settings)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_set_params_after_fit_changes_the_next_fit_not_the_current_one(data, tmp_path, name):
    model = make(name).fit(data)
    expected = {method: getattr(model, method)(data)
                for method in ("predict", "predict_proba", "transform")}
    model.set_params(**CHANGES[name])
    for method, values in expected.items():
        np.testing.assert_array_equal(getattr(model, method)(data), values, err_msg=method)
    model.save(tmp_path / "model.npz")
    loaded = load(tmp_path / "model.npz")
    for method, values in expected.items():
        np.testing.assert_array_equal(getattr(loaded, method)(data), values, err_msg=method)
    assert loaded.n_clusters == 3  # the file describes the fit
    assert model.n_clusters == CHANGES[name]["n_clusters"]  # the object keeps the new setting
    refit = model.fit(data)
    assert refit.predict_proba(data).shape == (len(data), CHANGES[name]["n_clusters"])


def test_kmeans_predict_proba_has_one_column_per_fitted_centre(data):
    model = KMeans(n_clusters=3, n_init=1, random_state=0).fit(data)
    for n_clusters in (2, 5, 12):
        model.set_params(n_clusters=n_clusters)
        proba = model.predict_proba(data)
        assert proba.shape == (len(data), 3)
        np.testing.assert_array_equal(proba.argmax(axis=1), model.labels_)


# ------------------------------------------------- item 9: k-means at any scale
@pytest.fixture(scope="module")
def blobs():
    from npclust.datasets import make_blobs

    X, _ = make_blobs(n_samples=300, n_features=5, centers=4, cluster_std=0.5, random_state=0)
    return X


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("scale", [1e-38, 1e-30, 1e-20, 1e18, 1e30, 1e37])
def test_float32_kmeans_at_extreme_scales_finds_the_float64_clusters(blobs, scale):
    reference = KMeans(n_clusters=4, random_state=0, dtype="float64").fit(blobs)
    X = (blobs * scale).astype(np.float32)
    model = KMeans(n_clusters=4, random_state=0, dtype="float32").fit(X)
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    assert np.isfinite(model.transform(X)).all() and np.isfinite(model.cluster_centers_).all()
    np.testing.assert_allclose(model.inertia_, reference.inertia_ * scale ** 2, rtol=1e-4)
    np.testing.assert_allclose(model.cluster_centers_ / scale, reference.cluster_centers_,
                               rtol=1e-4, atol=1e-4)


def test_power_of_two_scaling_changes_no_bit(blobs):
    # Scaling by 2**k is exact, so k-means at 2**-140 chooses exactly as at scale 1.
    from npclust.lloyd import kmeans

    X = blobs.astype(np.float32)
    tiny = X * np.float32(2.0 ** -100)
    centers, labels, inertia, n_iter = kmeans(X, 4, n_init=2, random_state=0)
    tiny_centers, tiny_labels, tiny_inertia, tiny_n_iter = kmeans(tiny, 4, n_init=2, random_state=0)
    np.testing.assert_array_equal(tiny_labels, labels)
    np.testing.assert_array_equal(tiny_centers, centers * np.float32(2.0 ** -100))
    assert tiny_inertia == inertia * 2.0 ** -200 and tiny_n_iter == n_iter


# ------------------------------------------------ item 10: degenerate results
def test_a_fit_that_uses_one_cluster_warns(data):
    from npclust.cluster import DegenerateResultWarning

    model = IMSAT(n_clusters=3, hidden_dims=(16,), epochs=2, batch_size=40, n_neighbors=5,
                  lr=10.0, random_state=0, n_init=1)
    with pytest.warns(DegenerateResultWarning, match="put all 120 samples in 1 cluster;"):
        model.fit(data)
    assert len(set(model.labels_)) == 1


def test_a_fit_with_empty_clusters_warns(data, monkeypatch):
    from npclust.cluster import DegenerateResultWarning, kmeans

    original = kmeans.kmeans

    def two_of_three(X, *args, **kwargs):
        centers, labels, inertia, n_iter = original(X, *args, **kwargs)
        return centers, np.minimum(labels, 1), inertia, n_iter

    monkeypatch.setattr(kmeans, "kmeans", two_of_three)
    with pytest.warns(DegenerateResultWarning, match=r"used only 2 of 3 clusters \(1 empty\)"):
        KMeans(n_clusters=3, n_init=1, random_state=0).fit(data)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_healthy_fit_does_not_warn(data, name):
    model = make(name)
    if name == "imsat":
        model.set_params(epochs=10)  # two epochs leave one blob's cluster empty
    model.fit(data)


def test_the_command_says_1_cluster_and_warns_in_one_line(data, tmp_path, capsys):
    from npclust.cli import main

    path = tmp_path / "data.npy"
    np.save(path, data)
    status = main(["fit", str(path), "--n-clusters", "3", "--quiet", "--set", "hidden_dims=(16,)",
                   "--set", "epochs=2", "--set", "batch_size=40", "--set", "n_neighbors=5",
                   "--set", "lr=10.0", "--set", "n_init=1"])
    err = capsys.readouterr().err.splitlines()
    assert status == 0
    assert [line for line in err if "warning" in line] == [
        "npclust fit: warning: DegenerateResultWarning: IMSAT put all 120 samples in 1 cluster; "
        "try a smaller learning rate, more training, or fewer clusters"]
    assert err[-1].startswith("120 samples in 1 cluster (")


# ------------------------------------------------- item 11: object arrays
@pytest.mark.parametrize("entry, error, fragments", [
    (10 ** 400, ValueError, ["too large for float32", "(401 characters)"]),
    (-(10 ** 400), ValueError, ["too large for float32"]),
    ("1.5", TypeError, ["not a number but a string", "'1.5'", "does not parse strings"]),
    (b"2", TypeError, ["but a string", "b'2'"]),
    (np.str_("3"), TypeError, ["but a string"]),
    ("Decimal:1E+400", ValueError, ["too large for float32", "1E+400"]),
    ("Decimal:NaN", ValueError, ["NaN or infinity"]),
    (float("inf"), ValueError, ["NaN or infinity"]),
    (10 ** 39, ValueError, ["too large for float32", "dtype='float64'"]),
])
def test_object_arrays_say_what_is_wrong(entry, error, fragments):
    from decimal import Decimal

    from npclust.validation import check_array

    if isinstance(entry, str) and entry.startswith("Decimal:"):
        entry = Decimal(entry.split(":", 1)[1])
    X = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=object)
    X[1, 0] = entry
    with pytest.raises(error) as raised:
        check_array(X)
    message = str(raised.value)
    assert "row 1, column 0" in message and len(message) < 300, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_object_arrays_of_numbers_still_convert():
    from decimal import Decimal
    from fractions import Fraction

    from npclust.validation import check_array

    X = np.array([[1, 2.5], [Fraction(1, 4), Decimal("0.5")], [np.int8(3), True]], dtype=object)
    np.testing.assert_array_equal(check_array(X, dtype=np.float64),
                                  [[1, 2.5], [0.25, 0.5], [3, 1]])
    with pytest.raises(ValueError, match="too large for float64 .*rescale the data\\)?$"):
        check_array(np.array([[1, 10 ** 400]], dtype=object), dtype=np.float64)
