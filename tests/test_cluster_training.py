"""The shared training loop (npclust.cluster.training): one set of tests for every deep estimator."""

import itertools
import re

import numpy as np
import pytest

from npclust.cluster import DEC, IDEC, IMSAT, training
from npclust.cluster.training import BatchStream, batch_boundaries
from npclust.datasets import make_blobs

FAST = {
    IMSAT: dict(hidden_dims=(8,), epochs=2, batch_size=40, n_neighbors=3),
    DEC: dict(hidden_dims=(8,), latent_dim=2, pretrain_epochs=2, pretrain_batch_size=32,
              max_iter=20, update_interval=10, batch_size=32, kmeans_n_init=1, tol=0.0),
    IDEC: dict(hidden_dims=(8,), latent_dim=2, pretrain_epochs=2, pretrain_batch_size=32,
               max_iter=20, update_interval=10, batch_size=32, kmeans_n_init=1, tol=0.0),
}


@pytest.fixture(scope="module")
def data():
    X, _ = make_blobs(n_samples=90, n_features=3, centers=3, random_state=3)
    return ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)


def test_batch_boundaries_fold_a_one_row_tail():
    assert batch_boundaries(501, 250) == [0, 250, 501]
    assert batch_boundaries(502, 250) == [0, 250, 500, 502]
    assert batch_boundaries(10, 20) == [0, 10]


def test_batch_stream_covers_every_sample_once_per_pass_and_resumes_exactly():
    stream = BatchStream(23, 5, np.random.default_rng(0))
    first_pass = stream.epoch()
    assert sorted(np.concatenate(first_pass)) == list(range(23))
    assert all(np.all(np.diff(batch) > 0) for batch in first_pass)
    stream.next()
    saved, rng_state = stream.state(), stream.rng.bit_generator.state
    expected = [stream.next() for _ in range(7)]
    resumed = BatchStream(23, 5, np.random.default_rng(99))
    resumed.rng.bit_generator.state = rng_state
    resumed.load_state(saved)
    for got, want in zip([resumed.next() for _ in range(7)], expected):
        np.testing.assert_array_equal(got, want)


def test_a_stream_saved_before_its_first_batch_resumes_with_full_batches():
    fresh = BatchStream(10, 4, np.random.default_rng(0))
    saved = fresh.state()
    assert saved["order"].size == 0 and saved["order"].dtype.kind == "i"
    resumed = BatchStream(10, 4, np.random.default_rng(0))
    resumed.load_state(saved)
    np.testing.assert_array_equal(resumed.next(), BatchStream(10, 4, np.random.default_rng(0)).next())


def test_epoch_loss_is_the_mean_over_the_batches_run(monkeypatch):
    # 501 rows in batches of 250: the one-row tail is folded in, so 2 batches, not 3.
    # A loop dividing by ceil(n / batch_size) reported 2/3 of the true mean.
    X = np.random.default_rng(0).standard_normal((501, 2)).astype(np.float32)
    monkeypatch.setattr(IMSAT, "_step", lambda self, *args: np.array([1.0, 2.0, 3.0]))
    model = IMSAT(n_clusters=2, hidden_dims=(4,), epochs=1, n_init=1, vat=False,
                  batch_size=250, random_state=0).fit(X)
    entry = model.history_[0]
    assert (entry["loss"], entry["conditional_minus_mu_marginal"], entry["vat"]) == (1.0, 2.0, 3.0)


@pytest.mark.parametrize("estimator", [IMSAT, DEC])
def test_the_restart_with_the_lowest_objective_is_kept(data, monkeypatch, estimator):
    objectives = iter([5.0, -1.0, 3.0])
    kept = {}
    original = estimator._objective

    def objective(self, model, X):
        value = next(objectives)
        if value == -1.0:
            kept.update({key: value.copy() for key, value in training.model_state(model).items()})
        return value, original(self, model, X)[1]

    monkeypatch.setattr(estimator, "_objective", objective)
    model = estimator(n_clusters=3, n_init=3, random_state=0, **FAST[estimator]).fit(data)
    fitted = training.model_state({name.rstrip("_"): getattr(model, name)
                                   for name in model._fitted_modules})
    for key, value in fitted.items():
        np.testing.assert_array_equal(value, kept[key], err_msg=key)
    assert model.history_[0]["stage"].startswith("restart 2/3")


@pytest.mark.parametrize("estimator", [IMSAT, DEC, IDEC])
def test_progress_estimates_the_whole_fit_and_says_why_it_resumes(data, tmp_path, capsys,
                                                                   monkeypatch, estimator):
    params = dict(FAST[estimator], n_clusters=3, n_init=2, random_state=0, verbose=1)
    # A clock that advances a second per reading, so tiny fits show non-zero estimates.
    clock = itertools.count()
    with monkeypatch.context() as patch:
        patch.setattr(training.time, "perf_counter", lambda: float(next(clock)))
        estimator(**params).fit(data)
    err = capsys.readouterr().err
    assert re.search(r"kept restart [12]/2: lowest objective -?\d+\.\d{4}", err), err
    lines = [line for line in err.splitlines() if "remaining" in line]
    remaining = [float(re.search(r"remaining ([0-9.]+)s", line).group(1)) for line in lines]
    first_restart = [value for line, value in zip(lines, remaining) if "restart 1/2" in line]
    # Until the last unit of the last restart, some of the fit is still to come.
    assert all(value > 0 for value in first_restart) and remaining[-1] == 0.0

    path = tmp_path / "fit.npz"
    uninterrupted = estimator(**params, checkpoint=path).fit(data)
    capsys.readouterr()
    resumed = estimator(**params, checkpoint=path).fit(data)
    # Resumed where nothing was left to do: why training stopped comes from the file.
    assert resumed.stop_reason_ == uninterrupted.stop_reason_ != ""
    err = capsys.readouterr().err
    assert re.search(rf"resuming from '{re.escape(str(path))}': restart 2/2, \w[\w ]* \d+ of \d+ "
                     r"done \(100% of the fit\)", err), err


def test_the_fit_says_why_training_stopped(data):
    dec = dict(FAST[DEC], n_clusters=3, random_state=0)
    assert DEC(**dict(dec, max_iter=20, tol=0.0)).fit(data).stop_reason_ == \
        "max_iter = 20 iterations reached"
    converged = DEC(**dict(dec, max_iter=1000, tol=0.5)).fit(data)
    assert converged.stop_reason_.startswith("converged: ") and "below tol = 0.5" in \
        converged.stop_reason_ and converged.n_iter_ < 1000
    imsat = IMSAT(n_clusters=3, random_state=0, n_init=2, **FAST[IMSAT]).fit(data)
    assert imsat.stop_reason_ == "2 epochs of train done"


@pytest.mark.parametrize("order, position, message", [
    (np.arange(10.0), 0, "batch order is not a permutation of 10 samples"),  # floats
    (np.arange(9), 0, "batch order is not a permutation of 10 samples"),  # too short
    (np.r_[0, np.arange(9)], 0, "batch order is not a permutation of 10 samples"),  # repeats
    (np.arange(10), 4, r"batch position 4 is outside \[0, 3\]"),
    (np.arange(10), -1, r"batch position -1 is outside \[0, 3\]"),
])
def test_a_corrupted_stream_position_is_refused_naming_what_is_wrong(order, position, message):
    stream = BatchStream(10, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match=message):
        stream.load_state({"order": order, "position": position})


def test_a_checkpoint_whose_stream_is_corrupted_names_the_problem(data, tmp_path, monkeypatch):
    from npclust.files.archive import read_archive, write_archive

    path = tmp_path / "fit.npz"
    params = dict(FAST[IMSAT], n_clusters=3, n_init=1, random_state=0, checkpoint=path)
    original, records = training.Progress.record, []

    def stop_after_one(self, *args):
        if records:
            raise KeyboardInterrupt
        records.append(None)
        return original(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(training.Progress, "record", stop_after_one)
        with pytest.raises(KeyboardInterrupt):
            IMSAT(**params).fit(data)
    header, arrays = read_archive(path, "checkpoint")
    arrays["batches/order"] = arrays["batches/order"][::-1][:-1]  # one sample lost
    write_archive(path, "checkpoint", {key: value for key, value in header.items()
                                       if key not in ("kind", "format_version")}, arrays)
    with pytest.raises(ValueError, match=r"corrupted \(its arrays do not fit this fit: the "
                                         r"batch order is not a permutation of 90 samples\)"):
        IMSAT(**params).fit(data)
