"""CSV files in other separators or encodings, and command-line settings that conflict or
cannot fit in memory: each a one-line error saying what to do."""

import numpy as np
import pytest

from npclust.cli import main


def run(argv, capsys):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line(status, out, err, *fragments, expected=2):
    assert status == expected and out == "", err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.mark.parametrize("content, fragments", [
    (b"1;2\n3;4\n5;6\n", ["line 2, column 1: '3;4' is not a number", "looks ';'-separated"]),
    (b"a;b\n1,5;2,5\n3;4\n", ["looks ';'-separated"]),
    (b"1\t2\n3\t4\n", ["looks tab-separated"]),
    (b"1|2\n3|4\n", ["looks '|'-separated"]),
    ("1,2\n3,4\n".encode("utf-16-le"), ["not UTF-8 text", "NUL bytes", "UTF-16",
                                         "save it as UTF-8"]),
    ("1,2\n3,4\n".encode("utf-16-be"), ["not UTF-8 text", "UTF-16"]),
    ("1,2\n3,4\n".encode("utf-16"), ["not UTF-8 text", "UTF-16 byte-order mark"]),
    ("1,2\n3,4\n".encode("utf-32"), ["not UTF-8 text"]),
])
def test_csv_in_another_separator_or_encoding_says_so(tmp_path, capsys, content, fragments):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    status, out, err = run(["fit", path, "--n-clusters", 2, "--method", "kmeans"], capsys)
    assert_one_line(status, out, err, "data.csv", *fragments)


def test_a_bad_cell_without_another_separator_gets_no_hint(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text("1,2\n3,abc\n")
    status, out, err = run(["fit", path, "--n-clusters", 2, "--method", "kmeans"], capsys)
    assert_one_line(status, out, err, "'abc' is not a number")
    assert "separated" not in err


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npy"
    np.save(path, np.r_[rng.normal(0, 0.3, (20, 2)), rng.normal(5, 0.3, (20, 2))])
    return path


@pytest.mark.parametrize("extra, fragments", [
    (["--set", "n_clusters=3"], ["--set n_clusters=... conflicts with --n-clusters"]),
    (["--set", "random_state=3"], ["conflicts with --seed"]),
    (["--checkpoint", "a.npz", "--set", "checkpoint='b.npz'"], ["conflicts with --checkpoint"]),
    (["--quiet", "--set", "verbose=1"], ["conflicts with --quiet"]),
    (["--set", "lr=1", "--set", "lr=2"], ["--set lr is given twice"]),
    (["--set", "checkpoint=5"], ["--set checkpoint must be a file name"]),
])
def test_set_conflicting_with_an_option_is_refused(data, capsys, extra, fragments, tmp_path,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(["fit", data, "--n-clusters", 2, *extra], capsys)
    assert_one_line(status, out, err, *fragments)
    assert not (tmp_path / "a.npz").exists() and not (tmp_path / "b.npz").exists()


def test_a_network_too_large_for_memory_is_one_line(data, capsys):
    # 8 PB: beyond any address space, so the allocation fails at once everywhere (the
    # issue's 80 GB (9999999999,) might be granted lazily on a machine that overcommits).
    status, out, err = run(["fit", data, "--n-clusters", 2, "--quiet", "--set",
                            "hidden_dims=(1000000000000000,)", "--set", "n_neighbors=3"], capsys)
    assert_one_line(status, out, err, "not enough memory", expected=1)
