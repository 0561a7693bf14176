"""Reading data matrices from ``.npy``, ``.npz`` and ``.csv`` files, and writing labels.

Used by the ``npclust`` command. Every problem with a file becomes a
:class:`DataFileError` whose message names the file and, for CSV, the line and
column, so the command can print one line instead of a traceback.
"""

import csv
import io
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..validation import check_array
from .archive import (
    ZIP_MAGIC,
    ArchiveError,
    atomic_write,
    check_magic,
    check_member_sizes,
    member_byte_limit,
    read_npy_header,
    read_npy_member,
)

__all__ = ["DataFileError", "read_matrix", "write_labels", "write_probabilities"]

SUPPORTED_SUFFIXES = (".npy", ".npz", ".csv")


class DataFileError(ValueError):
    """A data file that cannot be read as a numeric matrix."""


def read_matrix(path, dtype=np.float32, mmap=True):
    """Read a 2-D numeric matrix from ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy`` (memory-mapped read-only when ``mmap``, so large files are not
        loaded whole), ``.npz`` (the array named ``X``, or the only array), or
        ``.csv`` (comma separated, one sample per line; a first line that is not
        numeric is taken as a header).
    dtype : numpy dtype, default=np.float32
    mmap : bool, default=True

    Returns
    -------
    ndarray of shape (n_samples, n_features)

    Raises
    ------
    DataFileError
        Missing or unreadable file, a directory, unsupported extension, content
        that is not of the extension's format, pickled content, CSV that is not
        UTF-8, ragged rows, non-numeric or non-finite cells (with line and column),
        NaN or infinity, values too large for ``dtype``, wrong number of dimensions.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataFileError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if not path.is_file():
        raise DataFileError(f"{path}: not a regular file (a directory?)")
    try:
        if suffix == ".csv":
            data = _read_csv(path)
        else:
            _check_magic(path, suffix)
            if suffix == ".npy":
                data = _read_npy(path, mmap)
            else:
                data = _read_npz(path)
    except ArchiveError as error:
        raise DataFileError(str(error)) from None
    except DataFileError:
        raise
    except UnicodeDecodeError as error:
        raise DataFileError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as error:
        if "pickle" in str(error) or "Python objects" in str(error):
            raise DataFileError(
                f"{path}: holds Python objects (pickled), which npclust never loads; "
                "save a numeric array"
            ) from None
        raise DataFileError(f"{path}: cannot read ({error})") from None
    _check_conversion_fits(path, data, dtype)
    try:
        return check_array(data, name=str(path), dtype=dtype)
    except (TypeError, ValueError) as error:
        raise DataFileError(str(error)) from None


_MAGIC = {".npy": ((b"\x93NUMPY",), "a NumPy .npy file"),
          ".npz": (ZIP_MAGIC, "an .npz (zip) archive")}


def _check_magic(path, suffix):
    magics, what = _MAGIC[suffix]
    try:
        check_magic(path, magics, what)
    except ArchiveError as error:
        raise DataFileError(str(error)) from None


def _read_npy(path, mmap):
    """An ``.npy`` file, its header checked against the file's size before anything is read.

    A header may claim any shape; NumPy would try to allocate it (``MemoryError``) or
    fail deep inside ``mmap``. Here a claim larger than the file, or than the memory
    that could hold it, is one clear message.
    """
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(file)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(file)
        offset = file.tell()
    if dtype.hasobject:
        raise DataFileError(f"{path}: holds Python objects (pickled), which npclust never "
                            "loads; save a numeric array")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    available = path.stat().st_size - offset
    if declared > available:
        raise DataFileError(f"{path}: declares shape {shape} of {dtype} ({declared} bytes) "
                            f"but holds {available} bytes (truncated or corrupted)")
    if not mmap and declared > member_byte_limit():
        raise DataFileError(f"{path}: holds {declared} bytes, more than half the memory "
                            "available now")
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def _read_npz(path):
    """The array named ``X`` (or the only one), sizes checked before anything is inflated."""
    where = repr(str(path))
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename[:-4] if info.filename.endswith(".npy") else info.filename: info
                 for info in archive.infolist()}
        names = sorted(infos)
        if "X" in infos:
            name = "X"
        elif len(names) == 1:
            name = names[0]
        else:
            shown = names if len(names) <= 10 else names[:10] + ["..."]
            raise DataFileError(
                f"{path}: holds arrays {shown}; name the data array 'X' or store only one array"
            )
        info = infos[name]
        # Compressed data is the user's own: bounded by the memory, not by a ratio.
        check_member_sizes([info], where, max_inflated=None)
        shape, dtype, _ = read_npy_header(archive, info, name, where)
        # Refused from the header, before gigabytes are inflated for nothing.
        if len(shape) != 2:
            raise DataFileError(f"{path}: array {name!r} must be 2-D of shape (n_samples, "
                                f"n_features), its header declares shape {shape}")
        if dtype.kind not in "biuf":
            raise DataFileError(f"{path}: array {name!r} has dtype {dtype}; npclust needs real "
                                "numbers")
        return read_npy_member(archive, info, name, where)


def _check_conversion_fits(path, data, dtype):
    """Refuse a matrix whose conversion to ``dtype`` would need more than half the memory
    available (a memory-mapped ``.npy`` of float64 is copied to convert it)."""
    if not isinstance(data, np.ndarray) or data.dtype == dtype:
        return
    needed = data.size * np.dtype(dtype).itemsize
    limit = member_byte_limit()
    if needed > limit:
        raise DataFileError(f"{path}: converting its {data.shape} {data.dtype} values to "
                            f"{np.dtype(dtype)} needs {needed} bytes, more than half the memory "
                            f"available now ({limit} bytes)")


def _read_csv(path):
    """The CSV's matrix: NumPy's C parser for a well-formed file, else the checked reader."""
    _check_encoding(path)
    data = _read_well_formed_csv(path)
    return data if data is not None else _read_csv_checked(path)


def _read_well_formed_csv(path):
    """``np.loadtxt`` on a plain numeric CSV (an optional header line, then only finite
    numbers), about 8 times as fast as the checked reader on 20,000 x 784 data; None
    for anything else (quotes, blank-looking lines, bad cells, NaN, other encodings),
    which the checked reader then reads or explains with line and column."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as file:
        first_line = file.readline()
    header_lines = int(bool(first_line.strip()) and not all(
        _is_number(cell) for cell in next(csv.reader([first_line]), [])))
    try:
        with warnings.catch_warnings():
            # An empty file is the checked reader's to report, not a warning's.
            warnings.simplefilter("ignore", UserWarning)
            data = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2, comments=None,
                              skiprows=header_lines, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError):
        return None
    if data.size == 0 or not np.isfinite(data).all():
        return None
    return data


def _check_encoding(path):
    """Refuse UTF-16 and UTF-32 text up front, saying so.

    Without a byte-order mark, UTF-16 digits are valid UTF-8 (each followed by a NUL
    byte), so the reader would complain about cells like ``'1\x00'``; no UTF-8 CSV
    of numbers holds a NUL byte.
    """
    with open(path, "rb") as file:
        start = file.read(1 << 16)
    if start.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataFileError(f"{path}: not UTF-8 text (it starts with a UTF-16 byte-order mark); "
                            "save it as UTF-8")
    if b"\x00" in start:
        raise DataFileError(f"{path}: not UTF-8 text (it holds NUL bytes, as UTF-16 or UTF-32 "
                            "text does); save it as UTF-8")


# Separators a CSV exported elsewhere may use instead of commas.
_OTHER_DELIMITERS = (";", "\t", "|", " ")


def _delimiter_hint(cell):
    """`` (the file looks ';'-separated …)`` if ``cell`` is numbers joined by another separator."""
    for delimiter in _OTHER_DELIMITERS:
        parts = [part for part in cell.strip().split(delimiter) if part]
        if len(parts) > 1 and all(_is_number(part.replace(",", ".")) for part in parts):
            shown = "tab" if delimiter == "\t" else repr(delimiter)
            return (f" (the file looks {shown}-separated; npclust reads comma-separated values: "
                    "convert the file, e.g. pandas.read_csv(path, sep=...).to_csv(...))")
    return ""


def _read_csv_checked(path):
    """Read line by line with the csv module, naming the line and column of any problem."""
    rows, width, first_data_line = [], None, None
    # utf-8-sig: a byte-order mark (spreadsheet exports) would otherwise glue onto the
    # first cell, and the first data line would be taken for a header.
    with open(path, newline="", encoding="utf-8-sig") as file:
        for line_number, cells in enumerate(csv.reader(file), start=1):
            if not cells or all(not cell.strip() for cell in cells):
                continue
            try:
                values = [float(cell) for cell in cells]
            except ValueError:
                if first_data_line is None and not rows:
                    first_data_line = line_number + 1  # a header line
                    continue
                column, cell = next(
                    (index, cell) for index, cell in enumerate(cells, start=1) if not _is_number(cell)
                )
                raise DataFileError(
                    f"{path}: line {line_number}, column {column}: {cell[:60]!r} is not a "
                    f"number{_delimiter_hint(cell)}"
                ) from None
            if not all(np.isfinite(values)):
                column = next(index for index, value in enumerate(values, start=1)
                              if not np.isfinite(value))
                raise DataFileError(
                    f"{path}: line {line_number}, column {column}: {cells[column - 1].strip()!r} "
                    "is not a finite number (NaN and infinity are not accepted; impute or "
                    "drop missing values first)"
                )
            if width is None:
                width = len(values)
            elif len(values) != width:
                raise DataFileError(
                    f"{path}: line {line_number} has {len(values)} values, expected {width} "
                    "like the first data line"
                )
            rows.append(values)
    if not rows:
        raise DataFileError(f"{path}: no data rows")
    return np.array(rows)


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def write_labels(path, labels, what="labels file"):
    """Write one integer label per line to ``path`` (CSV with a ``label`` header).

    By the rules of :mod:`npclust.files.output`: a regular file is replaced
    atomically, a FIFO or character device (``/dev/stdout``) is written in place.

    Parameters
    ----------
    path : str or os.PathLike
    labels : array_like of int
    what : str, default="labels file"
        What the path is for, in error messages.
    """
    text = "label\n" + "".join(f"{int(label)}\n" for label in labels)
    atomic_write(path, lambda file: file.write(text.encode("utf-8")), what=what)


def write_probabilities(path, probabilities, what="probabilities file"):
    """Write soft assignments to ``path`` as CSV: a header ``p0,p1,...``, one row per sample.

    Written by the rules of :mod:`npclust.files.output`, like :func:`write_labels`; the
    values keep 9 significant digits (float32's precision).

    Parameters
    ----------
    path : str or os.PathLike
    probabilities : ndarray of shape (n_samples, n_clusters)
    what : str, default="probabilities file"
        What the path is for, in error messages.
    """
    probabilities = np.asarray(probabilities)
    header = ",".join(f"p{index}" for index in range(probabilities.shape[1]))
    buffer = io.StringIO()
    np.savetxt(buffer, probabilities, fmt="%.9g", delimiter=",", header=header, comments="")
    atomic_write(path, lambda file: file.write(buffer.getvalue().encode("utf-8")), what=what)
