"""Reading data files. CSV: NumPy's fast parser and the checked line-by-line reader give
the same matrix. ``.npz``: which array is the data. The memory limit of a conversion.

Error messages for malformed files are covered in tests/test_cli.py and
tests/test_bad_input.py; here, well-formed variants must read identically either way.
"""

import zipfile

import numpy as np
import pytest

from npclust.files import archive
from npclust.files import matrix as datafile
from npclust.files.matrix import DataFileError, read_matrix

ROWS = "1,2.5,-3\n4e-3,5,6\n7,8,+9\n"

WELL_FORMED = {
    "plain": ROWS,
    "header": "a,b,c\n" + ROWS,
    "quoted header": '"a","b","c"\n' + ROWS,
    "no final newline": ROWS.rstrip("\n"),
    "crlf": ROWS.replace("\n", "\r\n"),
    "spaces around cells": ROWS.replace(",", " , "),
    "byte-order mark": "\ufeff" + ROWS,
    "byte-order mark and header": "\ufeffx,y,z\n" + ROWS,
    "empty lines": "\n" + ROWS.replace("\n", "\n\n"),
}

NEEDS_CHECKED_READER = {
    "whitespace-only line": ROWS + "   \n",
    "quoted numbers": '"1","2.5","-3"\n' + ROWS,
    "underscore digits": "1_000,2,3\n" + ROWS,
}


def _write(tmp_path, text):
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8", newline="")
    return path


@pytest.mark.parametrize("name", sorted(WELL_FORMED))
def test_fast_path_reads_well_formed_files_like_the_checked_reader(name, tmp_path, monkeypatch):
    path = _write(tmp_path, WELL_FORMED[name])
    expected = datafile._read_csv_checked(path)

    def refuse(path):
        raise AssertionError("the checked reader ran on a well-formed file")

    monkeypatch.setattr(datafile, "_read_csv_checked", refuse)
    got = read_matrix(path, dtype=np.float64)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, [[1, 2.5, -3], [4e-3, 5, 6], [7, 8, 9]])


@pytest.mark.parametrize("name", sorted(NEEDS_CHECKED_READER))
def test_files_the_fast_parser_refuses_are_read_by_the_checked_reader(name, tmp_path):
    path = _write(tmp_path, NEEDS_CHECKED_READER[name])
    assert datafile._read_well_formed_csv(path) is None
    np.testing.assert_array_equal(read_matrix(path, dtype=np.float64),
                                  datafile._read_csv_checked(path))


def test_large_random_matrix_reads_identically_both_ways(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 40)) * 10.0 ** rng.integers(-5, 5, size=(300, 40))
    path = tmp_path / "big.csv"
    np.savetxt(path, X, delimiter=",", fmt="%.17g", header="h" * 5, comments="")
    fast = read_matrix(path, dtype=np.float64)
    np.testing.assert_array_equal(fast, datafile._read_csv_checked(path))
    np.testing.assert_array_equal(fast, X)


def test_npz_data_is_its_array_named_x_else_its_only_array(tmp_path):
    X = np.arange(6.0).reshape(3, 2)
    np.savez(tmp_path / "labelled.npz", X=X, y=np.array([0, 1, 0]))
    np.savez(tmp_path / "single.npz", data=X)
    for name in ("labelled.npz", "single.npz"):
        np.testing.assert_array_equal(read_matrix(tmp_path / name, dtype=np.float64), X)


def test_npz_arrays_are_named_as_numpy_names_them(tmp_path):
    # Only a ".npy" suffix is dropped, as np.load does: the refusal lists what np.load shows.
    path = tmp_path / "two.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.npy", b"")
        archive.writestr("notes.txt", b"")
    assert sorted(np.load(path).files) == ["a", "notes.txt"]
    with pytest.raises(DataFileError, match=r"holds arrays \['a', 'notes.txt'\];"):
        read_matrix(path)


def test_conversion_limit_counts_the_bytes_of_the_target_dtype(tmp_path, monkeypatch):
    # A mapped float64 file is copied to convert it: 1000 x 200 float32 values take
    # 800 kB, within the 1 MB limit set here, although the float64 file holds 1.6 MB.
    monkeypatch.setattr(archive, "available_memory", lambda: 2_000_000)
    path = tmp_path / "big.npy"
    np.save(path, np.ones((1000, 200)))
    data = read_matrix(path, dtype=np.float32, mmap=True)
    assert data.dtype == np.float32 and data.shape == (1000, 200)
