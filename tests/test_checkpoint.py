"""Checkpointed fits: interrupted and resumed ends exactly like uninterrupted; NaN stops cleanly."""

import hashlib

import numpy as np
import pytest
from interrupts import Interrupted, interrupt_after

from npclust.cluster import DEC, IDEC, IMSAT
from npclust.datasets import make_blobs
from npclust.files.archive import read_archive
from npclust.files.checkpoint import TrainingCheckpoint, data_fingerprint

SETTINGS = {
    IMSAT: dict(hidden_dims=(16,), epochs=6, batch_size=40, n_neighbors=5),
    DEC: dict(hidden_dims=(16,), latent_dim=2, pretrain_epochs=4, pretrain_batch_size=32,
              max_iter=40, update_interval=10, batch_size=48, kmeans_n_init=2, tol=0.0),
    IDEC: dict(hidden_dims=(16,), latent_dim=2, pretrain_epochs=4, pretrain_batch_size=32,
               max_iter=40, update_interval=10, batch_size=48, kmeans_n_init=2, tol=0.0),
}


@pytest.fixture(scope="module")
def data():
    X, _ = make_blobs(n_samples=150, n_features=3, centers=3, random_state=5)
    return (X - X.mean(axis=0)) / X.std(axis=0)


def _weights(model):
    modules = [model.network_] if hasattr(model, "network_") else [model.encoder_, model.decoder_]
    return [value for module in modules for value in module.state_dict().values()]


# Records of a fit: IMSAT 6 epochs per restart; DEC/IDEC 4 pretraining epochs, the k-means
# run and 4 target updates per restart. Stopping after record 7 of DEC/IDEC resumes in the
# middle of self-training (its target, iteration count and batch stream restored).
CASES = [(estimator, stop_after) for estimator in (IMSAT, DEC, IDEC) for stop_after in (1, 3, 6)]
CASES += [(DEC, 7), (IDEC, 7)]


@pytest.mark.parametrize("estimator, stop_after", CASES)
@pytest.mark.parametrize("n_init", [1, 2])
def test_resumed_fit_equals_uninterrupted(data, tmp_path, monkeypatch, estimator, n_init,
                                          stop_after):
    params = dict(SETTINGS[estimator], n_clusters=3, random_state=11, n_init=n_init)
    reference = estimator(**params).fit(data)

    path = tmp_path / "fit.ckpt.npz"
    with monkeypatch.context() as patch:
        interrupt_after(patch, stop_after)
        with pytest.raises(Interrupted):
            estimator(**params, checkpoint=path).fit(data)
    # The interruption hits before the epoch's checkpoint is written: after the
    # first record there is none yet, and the second fit starts from scratch.
    assert path.exists() == (stop_after > 1)
    resumed = estimator(**params, checkpoint=path).fit(data)

    np.testing.assert_array_equal(resumed.labels_, reference.labels_)
    for got, expected in zip(_weights(resumed), _weights(reference)):
        np.testing.assert_array_equal(got, expected)
    if estimator is not IMSAT:
        np.testing.assert_array_equal(resumed.cluster_centers_, reference.cluster_centers_)
    assert resumed.n_iter_ == reference.n_iter_
    # The same history, value for value and type for type (a count stays an int).
    def typed(history):
        return [{key: (type(value), value) for key, value in entry.items() if key != "elapsed"}
                for entry in history]
    assert typed(resumed.history_) == typed(reference.history_)


def test_resumed_imsat_reuses_the_saved_vat_radii(data, tmp_path, monkeypatch):
    from npclust.cluster import imsat

    params = dict(SETTINGS[IMSAT], n_clusters=3, random_state=11)
    path = tmp_path / "fit.ckpt.npz"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 3)
        with pytest.raises(Interrupted):
            IMSAT(**params, checkpoint=path).fit(data)
    expected = read_archive(path, "checkpoint")[1]["fit/vat_radius"]

    def no_search(*args, **kwargs):
        raise AssertionError("the neighbour search ran again on resume")

    monkeypatch.setattr(imsat, "kth_neighbor_distance", no_search)
    resumed = IMSAT(**params, checkpoint=path).fit(data)
    np.testing.assert_array_equal(resumed.vat_radius_, expected)


def test_resumed_imsat_without_vat_equals_uninterrupted(data, tmp_path, monkeypatch):
    # Without VAT there is no radius to keep: the checkpoint must hold no entry for one
    # (an entry of None would be an object array, which no checkpoint reader accepts).
    params = dict(SETTINGS[IMSAT], n_clusters=3, random_state=11, vat=False)
    reference = IMSAT(**params).fit(data)
    path = tmp_path / "fit.ckpt.npz"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 3)
        with pytest.raises(Interrupted):
            IMSAT(**params, checkpoint=path).fit(data)
    assert not any(name.startswith("fit/") for name in read_archive(path, "checkpoint")[1])
    resumed = IMSAT(**params, checkpoint=path).fit(data)
    np.testing.assert_array_equal(resumed.labels_, reference.labels_)
    assert resumed.vat_radius_ is None


def test_checkpoint_of_other_data_or_settings_is_refused(data, tmp_path):
    path = tmp_path / "fit.npz"
    IMSAT(**SETTINGS[IMSAT], n_clusters=3, random_state=0, checkpoint=path).fit(data)
    with pytest.raises(ValueError, match="different data"):
        IMSAT(**SETTINGS[IMSAT], n_clusters=3, random_state=0, checkpoint=path).fit(data + 1)
    with pytest.raises(ValueError, match="different params"):
        IMSAT(**SETTINGS[IMSAT], n_clusters=3, random_state=0, lr=1e-2,
              checkpoint=path).fit(data)
    with pytest.raises(ValueError, match="different class"):
        DEC(**SETTINGS[DEC], n_clusters=3, random_state=0, checkpoint=path).fit(data)


def test_data_fingerprint_is_shape_dtype_and_the_digest_of_the_bytes(data):
    # Stored in every checkpoint: a change of its form would refuse every earlier
    # checkpoint as one of "different data".
    assert data_fingerprint(data) == {
        "shape": [150, 3], "dtype": "float64",
        "blake2b": hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()}


def test_a_checkpoint_path_that_became_a_directory_is_refused_as_the_checkpoint(tmp_path):
    path = tmp_path / "fit.ckpt"
    checkpoint = TrainingCheckpoint(path, {"class": "IMSAT"})
    path.mkdir()  # after the check before training, before the first save
    with pytest.raises(IsADirectoryError, match=r"^checkpoint '.*fit\.ckpt' is a directory"):
        checkpoint.save({"restart": 0}, np.random.default_rng(0), {})


def test_corrupted_checkpoint_is_refused(data, tmp_path):
    path = tmp_path / "fit.npz"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not an npclust checkpoint"):
        IMSAT(**SETTINGS[IMSAT], n_clusters=3, checkpoint=path).fit(data)


def test_nan_loss_stops_with_last_good_weights(data, monkeypatch):
    from npclust.cluster import imsat

    original = imsat.mutual_information
    calls = {"n": 0}
    batches_per_epoch = -(-150 // 40)

    def poisoned(logits, mu):
        calls["n"] += 1
        value, grad = original(logits, mu)
        # Poison the third epoch.
        return (np.nan if calls["n"] > 2 * batches_per_epoch else value), grad

    monkeypatch.setattr(imsat, "mutual_information", poisoned)
    model = IMSAT(**SETTINGS[IMSAT], n_clusters=3, random_state=0, n_init=1)
    with pytest.raises(FloatingPointError, match="restored"):
        model.fit(data)
    monkeypatch.setattr(imsat, "mutual_information", original)
    two_epochs = IMSAT(**dict(SETTINGS[IMSAT], epochs=2), n_clusters=3, random_state=0,
                       n_init=1).fit(data)
    # The estimator keeps the weights after the last finite epoch (the second).
    assert len(model.history_) == 2
    for got, expected in zip(_weights(model), _weights(two_epochs)):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(model.labels_, two_epochs.labels_)
    assert np.all(np.isfinite(model.predict_proba(data)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("estimator", [DEC, IDEC])
def test_dec_divergence_keeps_finite_weights(data, estimator):
    model = estimator(**SETTINGS[estimator], n_clusters=3, random_state=0, pretrain_lr=1e30)
    with pytest.raises(FloatingPointError, match="restored"):
        model.fit(data * 1e30)
    assert all(np.all(np.isfinite(value)) for value in _weights(model))
