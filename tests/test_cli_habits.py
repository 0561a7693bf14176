"""The command line a user expects: --version, help for every option, --proba, progress, tidy checkpoints."""

import argparse

import numpy as np
import pytest

import npclust
from npclust import cli
from npclust.cluster import load

QUICK = ["--set", "hidden_dims=(8,)", "--set", "epochs=2", "--set", "n_init=2",
         "--set", "n_neighbors=3"]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        cli._parser().parse_args(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"npclust {npclust.__version__}"


SUMMARIES = {
    "demo": "cluster the embedded digits and compare with k-means",
    "fit": "cluster a data file (.npy, .npz or .csv)",
    "predict": "label a data file with a saved model",
    "scan": "suggest a number of clusters: silhouette and stability for each k",
    "export-reference": "write a model's input, outputs, loss and every gradient for checking "
                        "a port",
    "gradcheck": "check every backward pass against finite differences",
}


def test_help_says_what_npclust_and_each_command_do(capsys):
    assert cli.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Deep clustering in pure NumPy (DEC, IDEC, IMSAT)." in text
    for name, summary in SUMMARIES.items():
        assert f"{name} {summary}" in text, name
        assert cli.main([name, "--help"]) == 0
        assert summary in " ".join(capsys.readouterr().out.split()), name


def test_help_says_what_the_data_file_holds(capsys):
    for command in ("fit", "scan"):
        assert cli.main([command, "--help"]) == 0
        assert "samples as rows: .npy, .npz (array 'X') or .csv" in capsys.readouterr().out


def test_help_says_what_the_soft_assignments_option_takes(capsys):
    for command in ("fit", "predict"):
        assert cli.main([command, "--help"]) == 0
        assert "--proba CSV" in capsys.readouterr().out


def _subcommands():
    parser = cli._parser()
    choices = next(action for action in parser._actions
                   if isinstance(action, argparse._SubParsersAction)).choices
    return sorted(choices.items())


@pytest.mark.parametrize("name, subparser", _subcommands(), ids=[name for name, _ in _subcommands()])
def test_every_option_has_help_and_shows_its_default(name, subparser, capsys):
    for action in subparser._actions:
        assert action.help, f"npclust {name} {action.option_strings or action.dest} has no help"
    with pytest.raises(SystemExit):
        subparser.parse_args(["-h"])
    text = " ".join(capsys.readouterr().out.split())
    for action in subparser._actions:
        shown = action.default not in (None, [], argparse.SUPPRESS) and action.default is not False
        if action.option_strings and shown:
            assert f"(default: {action.default})" in text, (name, action.dest)


def test_fit_and_predict_write_soft_assignments(blobs_file, tmp_path):
    X, path = blobs_file
    fit_proba, predict_proba, model = tmp_path / "fit.csv", tmp_path / "predict.csv", tmp_path / "m.npz"
    assert cli.main(["fit", str(path), "--n-clusters", "3", *QUICK, "--quiet", "--output",
                     str(tmp_path / "labels.csv"), "--proba", str(fit_proba), "--save",
                     str(model)]) == 0
    assert cli.main(["predict", str(model), str(path), "--output", str(tmp_path / "l2.csv"),
                     "--proba", str(predict_proba)]) == 0
    expected = load(model).predict_proba(X)
    for written in (fit_proba, predict_proba):
        assert written.read_text().splitlines()[0] == "p0,p1,p2"
        values = np.loadtxt(written, delimiter=",", skiprows=1)
        np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-9)


def test_progress_is_on_by_default_and_the_fit_says_why_it_stopped(blobs_file, capsys):
    _, path = blobs_file
    assert cli.main(["fit", str(path), "--n-clusters", "3", *QUICK, "--output", "-"]) == 0
    err = capsys.readouterr().err
    assert "[restart 1/2 train] epoch 1/2" in err and "remaining" in err
    assert "training stopped: 2 epochs of train done" in err


def test_a_completed_fit_removes_its_checkpoint(blobs_file, tmp_path, capsys):
    _, path = blobs_file
    checkpoint = tmp_path / "fit.ckpt.npz"
    assert cli.main(["fit", str(path), "--n-clusters", "3", *QUICK, "--quiet",
                     "--checkpoint", str(checkpoint)]) == 0
    assert not checkpoint.exists()
    assert f"checkpoint {checkpoint} removed" in capsys.readouterr().err
