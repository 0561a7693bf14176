"""Every option of the ``npclust`` command takes effect, and the exit status says what happened."""

import numpy as np

from npclust import cli, functional
from npclust.cluster import IMSAT, load, training
from npclust.files.archive import read_archive

SMALL = {"hidden_dims": (8,), "epochs": 2, "n_init": 2, "n_neighbors": 3, "batch_size": 16}
SMALL_ARGS = [argument for name, value in SMALL.items()
              for argument in ("--set", f"{name}={value!r}")]


def _labels(text):
    lines = text.strip().splitlines()
    assert lines[0] == "label"
    return np.array([int(line) for line in lines[1:]])


def test_gradcheck_exits_0_when_every_gradient_matches(capsys):
    assert cli.main(["gradcheck"]) == 0
    assert "all" in capsys.readouterr().out


def test_gradcheck_exits_1_and_names_the_failure_when_a_backward_pass_is_wrong(monkeypatch,
                                                                                capsys):
    correct = functional.softmax_backward
    monkeypatch.setattr(functional, "softmax_backward",
                        lambda dy, y, axis=-1: 1.001 * correct(dy, y, axis))
    assert cli.main(["gradcheck"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "softmax" in out.lower()


def test_fit_options_set_seed_save_and_output_take_effect(blobs_file, tmp_path, capsys):
    X, path = blobs_file
    model_path, labels_path = tmp_path / "model.npz", tmp_path / "labels.csv"
    assert cli.main(["fit", str(path), "--n-clusters", "3", "--seed", "5", *SMALL_ARGS,
                     "--save", str(model_path), "--output", str(labels_path), "--quiet"]) == 0
    saved = load(model_path)
    expected = IMSAT(n_clusters=3, random_state=5, **SMALL).fit(X)
    assert {name: saved.get_params()[name] for name in SMALL} == SMALL
    assert saved.random_state == 5
    np.testing.assert_array_equal(saved.labels_, expected.labels_)
    np.testing.assert_array_equal(_labels(labels_path.read_text()), expected.labels_)
    assert capsys.readouterr().out == ""  # labels went to the file, not to stdout


def test_fit_writes_labels_to_stdout_without_output(blobs_file, capsys):
    X, path = blobs_file
    assert cli.main(["fit", str(path), "--n-clusters", "3", "--method", "kmeans", "--quiet"]) == 0
    labels = _labels(capsys.readouterr().out)
    assert labels.shape == (X.shape[0],) and set(labels) == {0, 1, 2}


def test_fit_checkpoint_is_written_and_resumed_from(blobs_file, tmp_path, capsys, monkeypatch):
    _, path = blobs_file
    checkpoint = tmp_path / "fit.ckpt.npz"
    argv = ["fit", str(path), "--n-clusters", "3", *SMALL_ARGS, "--checkpoint", str(checkpoint)]
    assert cli.main(argv[:-2]) == 0  # the same fit without a checkpoint
    uninterrupted = _labels(capsys.readouterr().out)
    original, records = training.Progress.record, []

    def interrupt_after_three(self, *args):
        if len(records) == 3:
            raise KeyboardInterrupt
        records.append(None)
        return original(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(training.Progress, "record", interrupt_after_three)
        assert cli.main(argv) == 130
    header, _ = read_archive(checkpoint, "checkpoint")
    assert header["identity"]["class"] == "IMSAT"
    assert header["identity"]["params"]["epochs"] == SMALL["epochs"]
    capsys.readouterr()
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "resuming from" in captured.err and "restart 2/2" in captured.err
    np.testing.assert_array_equal(_labels(captured.out), uninterrupted)
    assert not checkpoint.exists()


def test_fit_set_of_an_unknown_parameter_is_a_usage_error(blobs_file, capsys):
    _, path = blobs_file
    assert cli.main(["fit", str(path), "--n-clusters", "3", "--set", "epoch=2"]) == 2
    assert "epoch" in capsys.readouterr().err
