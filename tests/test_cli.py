"""The ``npclust`` command: every bad input is one line on stderr, exit status 2, no traceback."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from npclust.cli import main

QUICK_IMSAT = ["--set", "epochs=2", "--set", "hidden_dims=(8,)", "--set", "n_neighbors=3",
               "--set", "batch_size=16"]


@pytest.fixture
def files(tmp_path):
    """A directory of good and bad data files."""
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 0.3, (20, 2)), rng.normal(5, 0.3, (20, 2))]
    paths = {}

    def text(name, content, mode="w"):
        path = tmp_path / name
        if mode == "w":
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        paths[name] = path
        return path

    text("good.csv", "a,b\n" + "".join(f"{x},{y}\n" for x, y in X))
    text("three.csv", "1,2,3\n4,5,6\n")
    text("nonnumeric.csv", "1,2\n3,abc\n5,6\n")
    text("ragged.csv", "1,2\n3,4\n5\n")
    text("empty.csv", "")
    text("blank.csv", "\n\n  \n")
    text("header_only.csv", "a,b\n")
    text("nan.csv", "1,2\n3,nan\n5,6\n")
    text("inf.csv", "1,2\n3,4\n-inf,6\n")
    text("huge.csv", "1,2\n3,4\n5,1e39\n")
    text("data.txt", "1,2\n3,4\n")
    text("latin1.csv", b"1,2\n\xe9,4\n", mode="b")
    text("bom.csv", b"\xef\xbb\xbf1,2\n3,4\n5,6\n", mode="b")
    text("not_a_model.npz", "this is not a model")
    text("not_npy.npy", "hello")
    np.save(tmp_path / "good.npy", X)
    np.save(tmp_path / "vector.npy", X[:, 0])
    np.save(tmp_path / "complex.npy", X.astype(complex))
    np.save(tmp_path / "objects.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "two_arrays.npz", a=X, b=X)
    np.savez(tmp_path / "data_only.npz", X=X)
    (tmp_path / "folder.csv").mkdir()
    for name in ("good.npy", "vector.npy", "complex.npy", "objects.npy", "two_arrays.npz",
                 "data_only.npz", "folder.csv"):
        paths[name] = tmp_path / name
    paths["dir"] = tmp_path
    paths["X"] = X
    return paths


def run(argv, capsys):
    """``main(argv)``: (exit status, stdout, stderr)."""
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status, out, err, *fragments, expected_status=2):
    assert status == expected_status, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("npclust"), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# ------------------------------------------------------------------ data files
@pytest.mark.parametrize("name, fragments", [
    ("missing.csv", ["missing.csv", "no such file"]),
    ("folder.csv", ["folder.csv", "not a regular file"]),
    ("nonnumeric.csv", ["line 2, column 2", "'abc' is not a number"]),
    ("ragged.csv", ["line 3 has 1 values, expected 2"]),
    ("empty.csv", ["empty.csv", "no data rows"]),
    ("blank.csv", ["no data rows"]),
    ("header_only.csv", ["no data rows"]),
    ("nan.csv", ["line 2, column 2", "'nan' is not a finite number (NaN and infinity are not "
                 "accepted; impute or drop missing values first)"]),
    ("inf.csv", ["line 3, column 1", "'-inf' is not a finite number"]),
    ("huge.csv", ["too large for float32", "dtype='float64'"]),
    ("data.txt", ["unsupported file type '.txt'", ".npy, .npz, .csv"]),
    ("latin1.csv", ["not UTF-8 text"]),
    ("not_npy.npy", ["not a NumPy .npy file"]),
    ("vector.npy", ["must be 2-D", "shape (40,)"]),
    ("complex.npy", ["omplex"]),
    ("objects.npy", ["Python objects", "never loads"]),
    ("two_arrays.npz", ["holds arrays ['a', 'b']", "'X'"]),
    ("not_a_model.npz", ["not an .npz (zip) archive"]),
])
def test_fit_bad_data_file(files, capsys, name, fragments):
    path = files.get(name, files["dir"] / name)
    status, out, err = run(["fit", path, "--n-clusters", 2, "--method", "kmeans"], capsys)
    assert_one_line_error(status, out, err, "npclust fit: error:", *fragments)


def test_unreadable_file(files, capsys, monkeypatch):
    # Root can read a chmod 000 file, so simulate the permission error directly.
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(files["good.csv"]))

    monkeypatch.setattr("npclust.files.matrix.open", denied, raising=False)
    status, out, err = run(["fit", files["good.csv"], "--n-clusters", 2], capsys)
    assert_one_line_error(status, out, err, "good.csv", "Permission denied")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads files regardless of their mode")
def test_unreadable_file_by_mode(files, capsys):
    path = files["good.csv"]
    path.chmod(0)
    try:
        status, out, err = run(["fit", path, "--n-clusters", 2], capsys)
    finally:
        path.chmod(0o644)
    assert_one_line_error(status, out, err, "Permission denied")


def test_byte_order_mark_is_not_a_header(files, capsys):
    status, out, err = run(["fit", files["bom.csv"], "--n-clusters", 2, "--method", "kmeans",
                            "--quiet"], capsys)
    assert status == 0, err
    assert out.splitlines()[0] == "label" and len(out.splitlines()) == 4  # all three rows


# -------------------------------------------------------------------- options
@pytest.mark.parametrize("argv, fragments", [
    (["--n-clusters", 0, "--method", "kmeans"], ["n_clusters must be in [1, 40], got 0"]),
    (["--n-clusters", 41, "--method", "kmeans"], ["n_clusters", "got 41"]),
    (["--n-clusters", "two"], ["--n-clusters: invalid int value: 'two'"]),
    (["--n-clusters", 2, "--method", "gmm"], ["invalid choice: 'gmm'", "'imsat'", "'kmeans'",
                                              "'spectral'"]),
    ([], ["required", "--n-clusters"]),
    (["--n-clusters", 2, "--set", "lr"], ["--set expects NAME=VALUE, got 'lr'"]),
    (["--n-clusters", 2, "--set", "learning_rate=0.1"],
     ["invalid parameter 'learning_rate'", "valid parameters are", "'lr'"]),
    (["--n-clusters", 2, "--set", "lr=-1", *QUICK_IMSAT], ["lr must be a finite positive"]),
    (["--n-clusters", 2, "--set", "epochs=0"], ["epochs must be >= 1"]),
    (["--n-clusters", 2, "--set", "batch_size=0"], ["batch_size must be >= 2"]),
    (["--n-clusters", 2, "--method", "dec", "--set", "pretrain_lr=0"], ["pretrain_lr"]),
    (["--n-clusters", 2, "--set", "dtype='float16'"], ["dtype must be 'float32' or 'float64'"]),
    (["--n-clusters", 2, "--output", "/nonexistent/dir/labels.csv"],
     ["--output", "does not exist"]),
    (["--n-clusters", 2, "--save", "/nonexistent/dir/model.npz"], ["--save", "does not exist"]),
])
def test_fit_bad_options(files, capsys, argv, fragments):
    status, out, err = run(["fit", files["good.csv"], *argv], capsys)
    assert_one_line_error(status, out, err, *fragments)


def test_output_directory_is_checked_before_training(files, capsys):
    status, out, err = run(["fit", files["good.csv"], "--n-clusters", 2, *QUICK_IMSAT,
                            "--output", files["dir"] / "nowhere" / "labels.csv"], capsys)
    assert_one_line_error(status, out, err, "does not exist")  # no progress lines: no training


@pytest.mark.parametrize("argv", [[], ["bogus"], ["predict"], ["fit", "--n-clusters", "2"]])
def test_usage_errors_are_one_line(capsys, argv):
    status, out, err = run(argv, capsys)
    assert_one_line_error(status, out, err, "error:", "--help")


def test_help_exits_0(capsys):
    status, out, err = run(["fit", "--help"], capsys)
    assert status == 0 and "--n-clusters" in out and err == ""


# --------------------------------------------------------------------- predict
@pytest.fixture
def model(files, capsys):
    path = files["dir"] / "model.npz"
    status, _, err = run(["fit", files["good.csv"], "--n-clusters", 2, "--method", "kmeans",
                          "--quiet", "--save", path, "--output", files["dir"] / "fit.csv"], capsys)
    assert status == 0, err
    return path


def test_fit_save_predict_round_trip(files, model, capsys):
    status, out, err = run(["predict", model, files["good.npy"]], capsys)
    assert status == 0, err
    fit_labels = (files["dir"] / "fit.csv").read_text().splitlines()
    assert out.splitlines() == fit_labels
    assert fit_labels[0] == "label" and len(fit_labels) == 41
    labels = np.array(fit_labels[1:], dtype=int)
    assert set(labels[:20]) != set(labels[20:])  # the two blobs are told apart


@pytest.mark.parametrize("model_name, fragments", [
    ("missing.npz", ["no model file"]),
    ("not_a_model.npz", ["not an npclust model file"]),
    ("data_only.npz", ["not an npclust model", "no header"]),
    ("good.csv", ["not an npclust model file"]),
    ("folder.csv", ["not a regular file"]),
])
def test_predict_with_a_file_that_is_not_a_model(files, capsys, model_name, fragments):
    path = files.get(model_name, files["dir"] / model_name)
    status, out, err = run(["predict", path, files["good.csv"]], capsys)
    assert_one_line_error(status, out, err, "npclust predict: error:", *fragments)


def test_predict_with_a_truncated_model(files, model, capsys):
    model.write_bytes(model.read_bytes()[:200])
    status, out, err = run(["predict", model, files["good.csv"]], capsys)
    assert_one_line_error(status, out, err, "truncated or corrupted")


def test_predict_feature_mismatch_names_file_and_both_counts(files, model, capsys):
    status, out, err = run(["predict", model, files["three.csv"]], capsys)
    assert_one_line_error(status, out, err, "three.csv has 3 features", "fitted with 2")


@pytest.mark.parametrize("name", ["nan.csv", "nonnumeric.csv", "empty.csv", "data.txt"])
def test_predict_bad_data_file(files, model, capsys, name):
    status, out, err = run(["predict", model, files[name]], capsys)
    assert_one_line_error(status, out, err, name)


def test_diverging_training_exits_1_with_one_line(files, capsys):
    path = files["dir"] / "scaled.npy"
    np.save(path, files["X"] * 1e30)  # finite in float32, overflows inside the network
    status, out, err = run(["fit", path, "--n-clusters", 2, "--quiet", "--method", "dec",
                            "--set", "hidden_dims=(8,)", "--set", "pretrain_epochs=2",
                            "--set", "pretrain_lr=1e30"], capsys)
    assert_one_line_error(status, out, err, "training failed", "restored", expected_status=1)


# --------------------------------------------- the real command, in a process
def _command(*argv, entry_point=False):
    prefix = [shutil.which("npclust")] if entry_point else [sys.executable, "-m", "npclust.cli"]
    return subprocess.run([*prefix, *map(str, argv)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("argv", [
    ("fit", "{dir}/missing.csv", "--n-clusters", "2"),
    ("fit", "{dir}/nonnumeric.csv", "--n-clusters", "2"),
    ("fit", "{dir}/good.csv", "--n-clusters", "2", "--method", "nope"),
    ("predict", "{dir}/not_a_model.npz", "{dir}/good.csv"),
])
def test_no_traceback_from_the_command(files, argv):
    result = _command(*(arg.format(dir=files["dir"]) for arg in argv))
    assert_one_line_error(result.returncode, result.stdout, result.stderr)


@pytest.mark.skipif(shutil.which("npclust") is None, reason="console script not installed")
def test_console_script_exit_status(files):
    result = _command("fit", files["ragged.csv"], "--n-clusters", "2", entry_point=True)
    assert_one_line_error(result.returncode, result.stdout, result.stderr, "line 3")
    result = _command("fit", files["good.csv"], "--n-clusters", "2", "--method", "kmeans",
                      "--quiet", entry_point=True)
    assert result.returncode == 0 and result.stdout.startswith("label\n")
