"""CSV reading: NumPy's fast parser and the checked line-by-line reader give the same matrix.

Error messages for malformed files are covered in tests/test_cli.py and
tests/test_bad_input.py; here, well-formed variants must read identically either way.
"""

import numpy as np
import pytest

from npclust.files import matrix as datafile
from npclust.files.matrix import read_matrix

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
