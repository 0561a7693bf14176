"""Only the restart kept by the objective is trained on (``Stage.kept_only``, IMSAT's
``restart_epochs``): chosen as before, trained on from its own weights for the missing
epochs, resumable, rolled back on NaN, and without effect when nothing is kept_only."""

import re

import numpy as np
import pytest
from interrupts import Interrupted, interrupt_after

from npclust import cli
from npclust.cluster import IMSAT, load
from npclust.cluster import imsat as imsat_module
from npclust.cluster.training import Stage, fit_restarts, model_state
from npclust.datasets import make_blobs
from npclust.files.archive import read_archive, write_archive

# Fits of a few epochs on three blobs may leave a cluster empty; what is tested here
# is which network is trained, not how well it clusters.
pytestmark = pytest.mark.filterwarnings("ignore::npclust.cluster.DegenerateResultWarning")

SMALL = dict(n_clusters=3, hidden_dims=(16,), batch_size=40, n_neighbors=5)
# With this seed the three 2-epoch restarts end with distinct objectives, the lowest
# the second's and the highest the third's, so keeping the first, the last or the
# highest would each keep another restart.
SEED = 20


@pytest.fixture(scope="module")
def data():
    X, _ = make_blobs(n_samples=150, n_features=3, centers=3, random_state=5)
    return (X - X.mean(axis=0)) / X.std(axis=0)


def _entries(history):
    return [{key: value for key, value in entry.items() if key != "elapsed"} for entry in history]


def _weights(model):
    return model.network_.state_dict()


def _assert_same_fit(got, expected):
    np.testing.assert_array_equal(got.labels_, expected.labels_)
    assert got.objective_ == expected.objective_ and got.n_iter_ == expected.n_iter_
    for key, value in _weights(expected).items():
        np.testing.assert_array_equal(_weights(got)[key], value, err_msg=key)
    assert _entries(got.history_) == _entries(expected.history_)
    assert [_entries(history) for history in got.restart_histories_] == \
        [_entries(history) for history in expected.restart_histories_]
    assert got.stop_reason_ == expected.stop_reason_


def test_only_the_lowest_objective_restart_is_trained_on(data, monkeypatch):
    # Every epoch's starting weights and every objective evaluated, in order.
    starts, objectives = [], []
    train_epoch, objective = IMSAT._train_epoch, IMSAT._objective

    def recording_train_epoch(self, run):
        starts.append(model_state(run.model))
        return train_epoch(self, run)

    def recording_objective(self, model, X):
        evaluation = objective(self, model, X)
        objectives.append((evaluation[0], model_state(model)))
        return evaluation

    monkeypatch.setattr(IMSAT, "_train_epoch", recording_train_epoch)
    monkeypatch.setattr(IMSAT, "_objective", recording_objective)
    model = IMSAT(**SMALL, n_init=3, restart_epochs=2, epochs=4, random_state=SEED).fit(data)

    # Three restarts of 2 epochs, then 2 more epochs of one network: 8 epochs in all,
    # and an objective after each restart and after the training on.
    assert len(starts) == 8 and len(objectives) == 4
    values = [value for value, _ in objectives[:3]]
    kept = int(np.argmin(values))
    assert kept == 1 and values[2] == max(values)  # see SEED
    # The training on starts from the kept restart's weights as they were evaluated ...
    for key, value in objectives[kept][1].items():
        np.testing.assert_array_equal(starts[6][key], value, err_msg=key)
    # ... and the model is its result, whose objective is objective_.
    final_value, final_state = objectives[3]
    assert model.objective_ == final_value
    for key, value in final_state.items():
        np.testing.assert_array_equal(_weights(model)[key.split("/", 1)[1]], value, err_msg=key)
    assert not np.array_equal(final_state["network/0.weight"],
                              objectives[kept][1]["network/0.weight"])

    # The history: the kept restart's two epochs, then the two of its training on.
    assert model.n_iter_ == 4
    assert _entries(model.history_[:2]) == _entries(model.restart_histories_[kept])
    assert [(entry["stage"], entry["epoch"]) for entry in model.history_[2:]] == \
        [("restart 2/3 train on", 1), ("restart 2/3 train on", 2)]
    assert model.stop_reason_ == "2 epochs of train on done"


def test_the_restarts_are_those_of_a_fit_of_restart_epochs(data):
    short = IMSAT(**SMALL, n_init=3, epochs=2, random_state=SEED).fit(data)
    long = IMSAT(**SMALL, n_init=3, restart_epochs=2, epochs=4, random_state=SEED).fit(data)
    assert [_entries(history) for history in long.restart_histories_] == \
        [_entries(history) for history in short.restart_histories_]
    # The same restart kept, then trained on: its network moved on from the short fit's.
    assert _entries(long.history_[:2]) == _entries(short.history_)
    assert short.history_[0]["stage"].startswith("restart 2/3 ")
    assert not np.array_equal(_weights(long)["0.weight"], _weights(short)["0.weight"])
    assert long.objective_ != short.objective_


@pytest.mark.parametrize("settings", [dict(n_init=2, epochs=3, restart_epochs=3),
                                      dict(n_init=2, epochs=3, restart_epochs=7),
                                      dict(n_init=1, epochs=3, restart_epochs=1)])
def test_without_a_shorter_restart_the_fit_is_unchanged(data, settings):
    given = IMSAT(**SMALL, random_state=0, **settings).fit(data)
    # A copy without it: pytest hands the same dict to every run of the test.
    without = {key: value for key, value in settings.items() if key != "restart_epochs"}
    _assert_same_fit(given, IMSAT(**SMALL, random_state=0, **without).fit(data))
    assert {entry["stage"].rsplit(" ", 1)[-1] for entry in given.history_} == {"train"}


def test_the_time_remaining_counts_the_training_on(data, monkeypatch, capsys):
    from npclust.cluster import training

    # A clock that advances a second per reading, so tiny fits show non-zero estimates.
    clock = iter(range(10 ** 6))
    monkeypatch.setattr(training.time, "perf_counter", lambda: float(next(clock)))
    IMSAT(**SMALL, n_init=2, restart_epochs=2, epochs=4, random_state=0, verbose=1).fit(data)
    err = capsys.readouterr().err
    remaining = [float(value) for value in re.findall(r"remaining (-?[0-9.]+)s", err)]
    assert len(remaining) == 6 and all(value > 0 for value in remaining[:-1])
    assert remaining[-1] == 0.0
    assert re.search(r"kept restart \d/2: lowest objective -?[0-9.]+; training it on\n", err)


# ------------------------------------------------------------------ checkpoints
def _interrupt_at_the_last_objective(monkeypatch, n_init):
    """Stop after the training on is saved, before its objective is evaluated."""
    original, calls = IMSAT._objective, []

    def objective(self, model, X):
        calls.append(None)
        if len(calls) == n_init + 1:
            raise Interrupted
        return original(self, model, X)

    monkeypatch.setattr(IMSAT, "_objective", objective)


KEPT = dict(SMALL, n_init=2, restart_epochs=2, epochs=5, random_state=1)  # keeps restart 1


# Records: restart 1 epochs 1-2, restart 2 epochs 3-4, its training on 5-7. Record 5
# stops with the restarts saved and nothing trained on; 6 and 7 within the training on.
# The checkpoint holds the epochs before the interrupted one, all 7 at the objective.
@pytest.mark.parametrize("stop_after, saved_restart, saved_epochs",
                         [(5, 1, 4), (6, 2, 5), (7, 2, 6), ("objective", 2, 7)])
def test_a_fit_resumed_in_the_kept_phase_equals_an_uninterrupted_one(data, tmp_path, monkeypatch,
                                                                     capsys, stop_after,
                                                                     saved_restart, saved_epochs):
    reference = IMSAT(**KEPT).fit(data)
    path = tmp_path / "fit.ckpt.npz"
    with monkeypatch.context() as patch:
        if stop_after == "objective":
            _interrupt_at_the_last_objective(patch, KEPT["n_init"])
        else:
            interrupt_after(patch, stop_after)
        with pytest.raises(Interrupted):
            IMSAT(**KEPT, checkpoint=path).fit(data)
    progress = read_archive(path, "checkpoint")[0]["progress"]
    assert progress["restart"] == saved_restart
    capsys.readouterr()
    resumed = IMSAT(**KEPT, checkpoint=path, verbose=1).fit(data)
    _assert_same_fit(resumed, reference)
    # The share of the fit done counts the training on as part of the fit.
    where = (f"kept restart {reference.history_[0]['stage'].split()[1]}, train on epoch "
             f"{saved_epochs - 4} of 3" if saved_restart == KEPT["n_init"]
             else "restart 2/2, train epoch 2 of 2")
    assert f"resuming from {str(path)!r}: {where} done ({100 * saved_epochs / 7:.0f}% of the " \
        "fit)" in capsys.readouterr().err


def _edit_position(path, **changes):
    header, arrays = read_archive(path, "checkpoint")
    header["progress"].update(changes)
    write_archive(path, "checkpoint", {key: value for key, value in header.items()
                                       if key not in ("kind", "format_version")}, arrays)


@pytest.mark.parametrize("settings, changes, message", [
    (KEPT, dict(restart=3), "lies beyond the fit: restart index 3 with n_init = 2"),
    (KEPT, dict(restart=2, stage=0), "lies beyond the fit"),
    (KEPT, dict(restart=2, unit=4), "lies beyond the fit"),
    (KEPT, dict(restart=1, stage=1), "lies beyond the fit"),
    (KEPT, dict(restart=2, best=None), "is malformed"),
    (KEPT, dict(restart=0, stage=0), "is malformed"),  # the first restart follows none
    (dict(KEPT, restart_epochs=5), dict(restart=2),
     "lies beyond the fit: restart index 2 with n_init = 2, and no stage trains the kept "
     "restart on"),
])
def test_a_checkpoint_position_outside_the_fit_is_refused(data, tmp_path, monkeypatch, settings,
                                                          changes, message):
    path = tmp_path / "fit.ckpt.npz"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 7)
        with pytest.raises(Interrupted):
            IMSAT(**settings, checkpoint=path).fit(data)
    _edit_position(path, **changes)
    with pytest.raises(ValueError) as error:
        IMSAT(**settings, checkpoint=path).fit(data)
    assert str(error.value) == (f"checkpoint {str(path)!r} is corrupted (its training position "
                                f"{message})")


def test_kept_only_stages_must_come_last(data, monkeypatch):
    def stages(self, n_samples):
        return [Stage("train on", 1, self._train_epoch, kept_only=True),
                Stage("train", 1, self._train_epoch)]

    monkeypatch.setattr(IMSAT, "_stages", stages)
    with pytest.raises(ValueError, match=r"IMSAT\._stages\(\) puts a kept_only stage before one "
                                         "that every restart runs"):
        fit_restarts(IMSAT(**SMALL, n_init=2), data, None, np.random.default_rng(0))


# ------------------------------------------------------------------------- NaN
def test_nan_while_training_on_keeps_the_last_good_epoch(data, monkeypatch):
    reference = IMSAT(**dict(KEPT, epochs=3)).fit(data)
    original, calls = imsat_module.mutual_information, []
    # 4 batches an epoch, 2 epochs and an objective per restart, then one more epoch:
    # the second epoch of the training on diverges.
    finite_calls = 2 * (2 * 4 + 1) + 4

    def poisoned(logits, mu):
        calls.append(None)
        value, grad = original(logits, mu)
        return (np.nan if len(calls) > finite_calls else value), grad

    monkeypatch.setattr(imsat_module, "mutual_information", poisoned)
    model = IMSAT(**KEPT)
    with pytest.raises(FloatingPointError, match="IMSAT train on loss became nan.*restored"):
        model.fit(data)
    monkeypatch.undo()
    # The weights, labels and history of a fit that trained on for one epoch only.
    assert model.n_iter_ == 3
    assert _entries(model.history_) == _entries(reference.history_)
    for key, value in _weights(reference).items():
        np.testing.assert_array_equal(_weights(model)[key], value, err_msg=key)
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    assert np.all(np.isfinite(model.predict_proba(data)))


# ------------------------------------------------------------------- parameter
@pytest.mark.parametrize("value, error, message", [
    (0, ValueError, "restart_epochs must be >= 1, got 0"),
    (-2, ValueError, "restart_epochs must be >= 1, got -2"),
    (2.5, TypeError, "restart_epochs must be an integer, got 2.5"),
    (True, TypeError, "restart_epochs must be an integer, got True"),
])
def test_restart_epochs_is_validated(data, value, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        IMSAT(**SMALL, restart_epochs=value).fit(data)


def test_restart_epochs_is_cloned():
    clone = pytest.importorskip("sklearn.base").clone
    assert clone(IMSAT(restart_epochs=4)).restart_epochs == 4


def test_restart_epochs_goes_through_params_model_files_and_the_command(
        blobs_file, tmp_path, capsys):
    X, path = blobs_file
    settings = dict(hidden_dims=(8,), epochs=3, restart_epochs=1, n_init=2, n_neighbors=3,
                    batch_size=16)
    expected = IMSAT(n_clusters=3, random_state=5, **settings).fit(X)
    assert expected.get_params()["restart_epochs"] == 1
    model_path = tmp_path / "model.npz"
    argv = ["fit", str(path), "--n-clusters", "3", "--seed", "5", "--quiet", "--save",
            str(model_path)]
    for name, value in settings.items():
        argv += ["--set", f"{name}={value!r}"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    saved = load(model_path)
    assert saved.restart_epochs == 1 and saved.n_iter_ == 3
    np.testing.assert_array_equal(saved.labels_, expected.labels_)
    assert saved.objective_ == expected.objective_
