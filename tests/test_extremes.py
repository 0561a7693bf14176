"""Extreme numbers and degenerate data: finite, correct results, or a clear error.

* functional and losses at logits of +-1e4 (float32 and float64), equal logits, -inf
  entries, one-hot rows: exact values, no NaN, no NumPy warnings;
* degenerate data through every estimator: duplicate points (VAT radius 0), constant
  features (BatchNorm variance 0), all points identical, n_clusters == n_samples, DEC
  clusters that empty during self-training;
* a NaN or infinite loss: FloatingPointError, last good weights kept, no NaN anywhere.
"""

import warnings

import numpy as np
import pytest

from npclust import functional as F
from npclust.cluster import DEC, IDEC, IMSAT, KMeans, SpectralClustering
from npclust.datasets import make_blobs
from npclust.losses import (
    cross_entropy,
    dec_loss,
    kl_div,
    mse,
    mutual_information,
    student_t_assignment,
    target_distribution,
)
from npclust.validation import NotFittedError

DTYPES = [np.float32, np.float64]
# Any warning is an error, except the one a fit gives when its result leaves clusters
# empty: several degenerate cases here ask for more clusters than the data have.
no_warnings = pytest.mark.filterwarnings("error", "ignore::npclust.cluster.DegenerateResultWarning")


def _tolerance(dtype):
    return {"rtol": 1e-6, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


# ------------------------------------------------------------ functional
@no_warnings
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_softmax_family_at_large_logits(dtype, scale):
    x = np.array([[scale, -scale, 0.0], [scale, scale, scale], [scale, scale - 1, scale - 2]],
                 dtype=dtype)
    y, log_y, lse, h = F.softmax(x), F.log_softmax(x), F.logsumexp(x), F.entropy(x)
    for value in (y, log_y, lse, h):
        assert value.dtype == dtype and np.isfinite(value).all()
    big = max(scale, -scale)
    np.testing.assert_array_equal(y[0], [1.0, 0.0, 0.0] if scale > 0 else [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(log_y[0], np.array([0.0, -2 * big, -big], dtype=dtype)
                                  if scale > 0 else np.array([-2 * big, 0.0, -big], dtype=dtype))
    np.testing.assert_allclose(y[1], 1 / 3, **_tolerance(dtype))
    np.testing.assert_allclose(lse[1], scale + np.log(3), rtol=1e-6)
    # Row 2 is softmax([0, -1, -2]) whatever the offset, when the offset is exact.
    reference = np.exp([0.0, -1.0, -2.0]) / np.exp([0.0, -1.0, -2.0]).sum()
    np.testing.assert_allclose(y[2], reference, rtol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(h[:2], [0.0, np.log(3)], **_tolerance(dtype))
    assert h[0] == 0.0


@no_warnings
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_equal_logits_are_uniform(dtype, n):
    for value in (0.0, 1e4, -1e4, 3.3e38 if dtype == np.float32 else 1.7e308):
        x = np.full((2, n), value, dtype=dtype)
        np.testing.assert_allclose(F.softmax(x), 1.0 / n, rtol=1e-6)
        np.testing.assert_allclose(F.entropy(x), np.log(n), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(F.log_softmax(x), -np.log(n), rtol=1e-6, atol=1e-7)
        expected = np.float64(value) + np.log(n)
        lse = F.logsumexp(x)
        assert np.isfinite(lse).all() or not np.isfinite(np.asarray(expected, dtype=dtype))
        np.testing.assert_allclose(lse, expected, rtol=1e-6)


@no_warnings
@pytest.mark.parametrize("dtype", DTYPES)
def test_minus_infinity_entries(dtype):
    x = np.array([[0.0, -np.inf, 1.0], [5.0, -np.inf, -np.inf], [1e4, -np.inf, -1e4]],
                 dtype=dtype)
    y, log_y, h = F.softmax(x), F.log_softmax(x), F.entropy(x)
    assert (y[:, 1] == 0).all() and (log_y[:, 1] == -np.inf).all()
    np.testing.assert_allclose(y[0], [1 / (1 + np.e), 0, np.e / (1 + np.e)], rtol=1e-6)
    np.testing.assert_array_equal(y[1], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(h[1:], [0.0, 0.0])
    assert np.isfinite(h).all() and np.isfinite(F.logsumexp(x)).all()
    # Gradients: 0 where the probability is 0, never NaN.
    dy = np.ones_like(x)
    for dx in (F.softmax_backward(dy, y), F.entropy_backward(np.ones(3, dtype), log_y, h),
               F.logsumexp_backward(np.ones(3, dtype), x, F.logsumexp(x))):
        assert np.isfinite(dx).all() and (dx[:, 1] == 0).all()
    # log_softmax passes dy straight through at a -inf entry (d log_y_j / dx_j = 1 - y_j = 1).
    dx = F.log_softmax_backward(dy, log_y)
    assert np.isfinite(dx).all() and (dx[:, 1] == 1).all()


@no_warnings
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_hot_entropies_are_exactly_zero(dtype):
    one_hot_logits = np.array([[0.0, -np.inf, -np.inf], [0.0, 1e4, -1e4], [-1e4, -1e4, 1e4]],
                              dtype=dtype)
    h = F.entropy(one_hot_logits)
    assert h.dtype == dtype
    np.testing.assert_array_equal(h, 0.0)
    assert not np.signbit(h).any()
    probabilities = np.eye(3, dtype=dtype)
    np.testing.assert_array_equal(F.entropy_from_probs(probabilities), 0.0)
    # H(Y|X) of one-hot predictions is 0, so the information loss is -mu H(Y) exactly.
    loss, dlogits = mutual_information(one_hot_logits, mu=4.0)
    assert loss == pytest.approx(-4.0 * np.log(3), rel=1e-6)
    assert np.isfinite(dlogits).all()


@no_warnings
def test_all_minus_infinity_row_is_undefined_not_silent():
    # No distribution exists: NaN (with NumPy's warning), as in scipy.special.
    with pytest.warns(RuntimeWarning):
        y = F.softmax(np.array([[-np.inf, -np.inf]]))
    assert np.isnan(y).all()
    assert F.logsumexp(np.array([-np.inf, -np.inf])) == -np.inf


# ---------------------------------------------------------------- losses
@no_warnings
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e4, 1.0, 1e-4])
def test_losses_finite_at_extreme_logits(dtype, scale):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((16, 5)) * scale).astype(dtype)
    for loss, grad in (mutual_information(logits), cross_entropy(logits, logits.argmax(1)),
                       cross_entropy(logits, logits.argmin(1))):
        assert np.isfinite(loss) and np.isfinite(grad).all() and grad.dtype == dtype
    # Correct confident labels cost exactly 0; wrong ones cost the logit gap.
    if scale == 1e4:
        loss, _ = cross_entropy(logits, logits.argmax(1))
        assert loss == 0.0 and not np.signbit(loss)
        gap = np.mean(logits.max(1).astype(np.float64) - logits.min(1))
        assert cross_entropy(logits, logits.argmin(1))[0] == pytest.approx(gap, rel=1e-5)


@no_warnings
@pytest.mark.parametrize("dtype", DTYPES)
def test_mutual_information_matches_float64_reference(dtype):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((32, 4)) * 1e4
    reference, dreference = mutual_information(logits)
    loss, dlogits = mutual_information(logits.astype(dtype))
    assert loss == pytest.approx(reference, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(dlogits, dreference, rtol=1e-4, atol=1e-6)


@no_warnings
def test_kl_div_zero_target_against_minus_infinity():
    log_q = np.array([[0.0, -np.inf], [np.log(0.5), np.log(0.5)]])
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    loss, dlog_q = kl_div(log_q, p)
    assert loss == 0.0 and np.isfinite(dlog_q).all()
    # p > 0 where q = 0: the divergence is infinite, honestly.
    assert kl_div(log_q, p[::-1])[0] == np.inf


@no_warnings
@pytest.mark.parametrize("dtype", DTYPES)
def test_dec_losses_at_large_embeddings(dtype):
    rng = np.random.default_rng(2)
    z, centers = rng.standard_normal((8, 3)) * 1e4, rng.standard_normal((4, 3)) * 1e4
    q64 = student_t_assignment(z, centers)
    q = student_t_assignment(z.astype(dtype), centers.astype(dtype))
    assert q.dtype == dtype
    np.testing.assert_allclose(q, q64, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-6)
    p = target_distribution(q64)
    loss, dz, dcenters = dec_loss(z.astype(dtype), centers.astype(dtype), p.astype(dtype))
    reference = dec_loss(z, centers, p)
    assert loss == pytest.approx(reference[0], rel=1e-4)
    np.testing.assert_allclose(dz, reference[1], rtol=1e-3, atol=1e-12)
    np.testing.assert_allclose(dcenters, reference[2], rtol=1e-3, atol=1e-12)


@no_warnings
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_cluster_in_dec_target_and_loss(dtype):
    # Every point on center 0, center 1 so far away that q underflows to exactly 0.
    z = np.zeros((4, 2), dtype=dtype)
    centers = np.array([[0.0, 0.0], [1e6, 1e6]], dtype=dtype)
    q = student_t_assignment(z, centers, alpha=100.0)
    assert (q[:, 1] == 0).all()
    p = target_distribution(q)
    np.testing.assert_array_equal(p, [[1.0, 0.0]] * 4)
    loss, dz, dcenters = dec_loss(z, centers, p, alpha=100.0)
    assert loss == 0.0 and np.isfinite(dz).all() and np.isfinite(dcenters).all()


@no_warnings
def test_mse_at_large_values():
    loss, dpred = mse(np.full((2, 2), 1e4), np.full((2, 2), -1e4))
    assert loss == 4e8 and np.isfinite(dpred).all()
    loss, _ = mse(np.full((2, 2), 1e4, np.float32), np.full((2, 2), -1e4, np.float32))
    assert loss == 4e8


# --------------------------------------------------------- degenerate data
SETTINGS = {
    "imsat": (IMSAT, dict(hidden_dims=(16,), epochs=3, batch_size=16, n_neighbors=3)),
    "dec": (DEC, dict(hidden_dims=(16,), latent_dim=2, pretrain_epochs=3, pretrain_batch_size=16,
                      max_iter=20, update_interval=5, batch_size=16, kmeans_n_init=2)),
    "idec": (IDEC, dict(hidden_dims=(16,), latent_dim=2, pretrain_epochs=3,
                        pretrain_batch_size=16, max_iter=20, update_interval=5, batch_size=16,
                        kmeans_n_init=2)),
    "kmeans": (KMeans, dict(n_init=2)),
    "spectral": (SpectralClustering, dict(n_neighbors=5, n_init=2)),
}
NAMES = list(SETTINGS)


def make(name, **overrides):
    cls, settings = SETTINGS[name]
    return cls(**{"n_clusters": 3, "random_state": 0, **settings, **overrides})


def _degenerate(kind):
    rng = np.random.default_rng(4)
    if kind == "duplicates":  # every point 8 times: distance to the 3rd neighbour is 0
        return np.repeat(rng.standard_normal((6, 3)), 8, axis=0)
    if kind == "constant feature":
        return np.c_[rng.standard_normal((48, 2)), np.full(48, 7.0)]
    if kind == "all features constant per row":
        return np.repeat(rng.standard_normal((48, 1)), 3, axis=1)
    if kind == "all identical":
        return np.full((48, 3), 3.5)
    if kind == "all zero":
        return np.zeros((48, 3))
    if kind == "two distinct points":
        return np.repeat([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], 24, axis=0)
    if kind == "tiny scale":
        return rng.standard_normal((48, 3)) * 1e-30
    if kind == "one feature":
        return rng.standard_normal((48, 1))
    raise ValueError(kind)


DEGENERATE = ["duplicates", "constant feature", "all features constant per row",
              "all identical", "all zero", "two distinct points", "tiny scale", "one feature"]


def _check_fitted(model, X, n_clusters=3, scalars=("objective_", "inertia_")):
    proba = model.predict_proba(X)
    assert proba.shape == (X.shape[0], n_clusters) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    labels = model.labels_
    assert labels.shape == (X.shape[0],) and labels.dtype.kind in "iu"
    assert labels.min() >= 0 and labels.max() < n_clusters
    if isinstance(model, SpectralClustering):
        # A vote of the nearest training samples, which need not replay the fit: on
        # data without clusters (or of identical points) it may disagree with labels_.
        predicted = model.predict(X)
        assert predicted.min() >= 0 and predicted.max() < n_clusters
    else:
        np.testing.assert_array_equal(model.predict(X), labels)
    assert np.isfinite(model.transform(X)).all()
    # Also after a failed fit, whose estimator was fitted by the training loop alone.
    assert model.n_features_in_ == X.shape[1]
    for attribute in (*scalars, "cluster_centers_", "vat_radius_"):
        value = getattr(model, attribute, None)
        if value is not None:
            assert np.isfinite(value).all(), attribute


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", DEGENERATE)
def test_degenerate_data_gives_finite_valid_results(name, kind):
    X = _degenerate(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # see the next test
        model = make(name).fit(X)
    _check_fitted(model, X)


def _warning_cases():
    for name in NAMES:
        for kind in DEGENERATE:
            yield pytest.param(name, kind, id=f"{kind}-{name}")


@no_warnings
@pytest.mark.parametrize("name, kind", list(_warning_cases()))
def test_degenerate_data_raises_no_numpy_warnings(name, kind):
    make(name).fit(_degenerate(kind))


@no_warnings
def test_duplicate_points_give_vat_radius_zero():
    X = _degenerate("duplicates")
    model = make("imsat").fit(X)
    np.testing.assert_array_equal(model.vat_radius_, 0.0)
    _check_fitted(model, X)


@no_warnings
@pytest.mark.parametrize("name", NAMES)
def test_n_clusters_equal_to_n_samples(name):
    X = np.random.default_rng(5).standard_normal((5, 3))
    extra = {"n_neighbors": 2, "batch_size": 5, "pretrain_batch_size": 5}
    extra = {key: value for key, value in extra.items() if key in SETTINGS[name][0]._get_param_names()}
    model = make(name, n_clusters=5, **extra).fit(X)
    _check_fitted(model, X, n_clusters=5)
    if name == "kmeans":
        assert sorted(model.labels_) == [0, 1, 2, 3, 4]


@no_warnings
@pytest.mark.parametrize("name", ["dec", "idec"])
def test_dec_clusters_that_empty_during_self_training(name):
    # Two blobs, four clusters: k-means starts with four non-empty clusters and the
    # self-training empties two of them.
    X, _ = make_blobs(n_samples=120, n_features=4, centers=2, cluster_std=0.3, random_state=0)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    model = make(name, n_clusters=4, max_iter=200, update_interval=10, tol=0.0).fit(X)
    assert (np.bincount(model.labels_, minlength=4) == 0).any()
    _check_fitted(model, X, n_clusters=4)
    cluster_entries = [entry for entry in model.history_ if entry["stage"] == "cluster"]
    assert cluster_entries and all(np.isfinite(entry["loss"]) for entry in cluster_entries)


@pytest.mark.parametrize("name", ["dec", "idec"])
@pytest.mark.parametrize("n_init", [1, 2])
def test_dec_objective_finite_with_confident_assignments(name, n_init):
    X, _ = make_blobs(n_samples=120, n_features=4, centers=2, cluster_std=0.3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model = make(name, n_clusters=2, alpha=100.0, n_init=n_init).fit(X * 10)
    assert (model.predict_proba(X * 10) == 0).any()  # the case in question
    assert np.isfinite(model.objective_)


def test_kmeans_refuses_data_whose_squared_distances_overflow():
    X, _ = make_blobs(n_samples=60, n_features=2, centers=3, cluster_std=0.3, random_state=0)
    reference = make("kmeans").fit(X).labels_
    np.testing.assert_array_equal(make("kmeans").fit(X * 1e100).labels_, reference)
    with pytest.raises(ValueError, match="too large for squared distances"):
        make("kmeans").fit(X * 1e160)


# ------------------------------------------------------------- divergence
def _diverging(name):
    """(estimator, data) whose training really diverges: IMSAT's BatchNorm absorbs any
    input scale, so it gets an absurd learning rate; DEC's autoencoder gets data whose
    reconstruction error overflows float32."""
    X, _ = make_blobs(n_samples=40, n_features=2, centers=2, cluster_std=0.3, random_state=0)
    if name == "imsat":
        return make(name, n_clusters=2, lr=1e30, vat=False), X
    return make(name, n_clusters=2), X * 1e30


@pytest.mark.parametrize("name", ["imsat", "dec", "idec"])
def test_non_finite_loss_raises_floating_point_error(name):
    model, X = _diverging(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(FloatingPointError, match="became (nan|inf).*restored"):
            model.fit(X)
    if name == "imsat":
        # Diverged in its first epoch: fitted with the last good (the initial) weights.
        assert model.labels_.dtype.kind in "iu"
        np.testing.assert_array_equal(model.predict(X), model.labels_)
        networks = [model.network_]
    else:
        # Diverged while pretraining: no clustering yet, so not fitted, but the
        # autoencoder keeps its last good weights.
        assert not hasattr(model, "labels_")
        with pytest.raises(NotFittedError):
            model.predict(X)
        networks = [model.encoder_, model.decoder_]
    for network in networks:
        for value in network.state_dict().values():
            assert np.isfinite(value).all()


def _nan_after(function, n_calls):
    """``function`` until it has been called ``n_calls`` times, then NaN loss and gradients."""
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        result = function(*args, **kwargs)
        if calls["n"] <= n_calls:
            return result
        return tuple(np.full_like(np.asarray(value, dtype=float), np.nan) if i else np.nan
                     for i, value in enumerate(result))

    return wrapped


def test_imsat_divergence_keeps_the_last_good_epoch(monkeypatch):
    from npclust.cluster import imsat

    X, _ = make_blobs(n_samples=64, n_features=3, centers=3, random_state=1)
    batches_per_epoch = 4  # 64 samples, batch_size 16
    reference = make("imsat", epochs=2, n_init=1).fit(X)
    monkeypatch.setattr(imsat, "mutual_information",
                        _nan_after(imsat.mutual_information, 2 * batches_per_epoch + 1))
    model = make("imsat", epochs=5, n_init=1)
    with pytest.raises(FloatingPointError, match="IMSAT.*became nan.*restored"):
        model.fit(X)
    # The weights after epoch 2, exactly as a 2-epoch fit leaves them.
    assert model.n_iter_ == 2
    for key, value in model.network_.state_dict().items():
        np.testing.assert_array_equal(value, reference.network_.state_dict()[key], err_msg=key)
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    monkeypatch.undo()
    # objective_ was computed with the patched loss; everything else must be clean.
    _check_fitted(model, X, scalars=())


@pytest.mark.parametrize("name", ["dec", "idec"])
def test_dec_divergence_keeps_the_last_good_target_update(monkeypatch, name):
    from npclust.cluster import dec

    X, _ = make_blobs(n_samples=64, n_features=3, centers=3, random_state=1)
    reference = make(name, max_iter=10, tol=0.0).fit(X)
    monkeypatch.setattr(dec, "dec_loss", _nan_after(dec.dec_loss, 12))
    model = make(name, max_iter=40, tol=0.0)
    with pytest.raises(FloatingPointError, match="cluster kl became nan.*restored"):
        model.fit(X)
    np.testing.assert_array_equal(model.cluster_centers_, reference.cluster_centers_)
    for key, value in model.encoder_.state_dict().items():
        np.testing.assert_array_equal(value, reference.encoder_.state_dict()[key], err_msg=key)
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    monkeypatch.undo()
    # objective_ was computed with the patched loss; everything else must be clean.
    _check_fitted(model, X, scalars=())


@pytest.mark.parametrize("name", ["imsat", "dec", "idec"])
def test_failed_refit_leaves_a_consistent_estimator(name):
    X_old = np.random.default_rng(6).standard_normal((40, 4))
    diverging, X_new = _diverging(name)
    model = make(name, n_clusters=2).fit(X_old)
    model.set_params(**diverging.get_params())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(FloatingPointError):
            model.fit(X_new)
    if name == "imsat":
        assert model.n_features_in_ == X_new.shape[1]
        np.testing.assert_array_equal(model.predict(X_new), model.labels_)
    else:
        # Pretraining diverged: nothing of the earlier fit may pass for this one's result.
        for attribute in ("n_features_in_", "labels_", "cluster_centers_", "objective_"):
            assert not hasattr(model, attribute), attribute
        with pytest.raises(NotFittedError):
            model.predict(X_new)


def test_imsat_with_overflowing_distances_fails_cleanly():
    X = np.random.default_rng(0).normal(size=(40, 2)) * 1e30
    with pytest.raises(ValueError, match=r"values up to 2\.\d+e\+30: their squares .* overflow "
                                         r"float32.*standardise the data or set dtype='float64'"):
        make("imsat", n_clusters=2).fit(X)
    # In float64 the same data train (the network sees them standardised by BatchNorm).
    make("imsat", n_clusters=2, dtype="float64").fit(X)
