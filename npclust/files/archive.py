"""The one file format npclust writes: a JSON header and named arrays in an ``.npz`` archive.

Model files, training checkpoints and port-reference vectors are all this format,
told apart by the header's ``kind``:

* ``__npclust__``: a 0-d unicode array holding a JSON object with at least
  ``{"kind": "model" | "checkpoint" | "port-reference", "format_version": 2}``, plus what
  that kind records (see :mod:`npclust.cluster.persistence`,
  :mod:`npclust.files.checkpoint`, :mod:`npclust.cluster.port_vectors`);
* any number of named ``.npy`` members of numbers.

Writing is atomic (:func:`atomic_write`). Reading (:func:`read_archive`) treats the
file as untrusted: it never unpickles; it checks the zip magic, that every member is
an ``.npy`` array, the header's size and nesting before parsing it, and each member's
declared shape and dtype against the bytes the member really holds *before* any
array is allocated; every failure is one :class:`ArchiveError` naming the file.

Version history: version 1 (npclust 0.1) had three formats. Its model files
(``__npclust__`` with ``format_version: 1``) still load: their layout is version 2's
model layout without ``kind``. Version-1 checkpoints (``__checkpoint__``) are refused
with a message saying so; version-1 port references (``__reference__``) are files
for ports to read, never read by npclust.
"""

import json
import os
import threading
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["FORMAT_VERSION", "KINDS", "ArchiveError", "atomic_write", "json_value",
           "write_archive", "read_archive", "check_magic"]

FORMAT_VERSION = 2
KINDS = ("model", "checkpoint", "port-reference")
HEADER_MEMBER = "__npclust__"
# A model's header holds parameters and the training history: kilobytes. The bound
# stops a hostile file from making the JSON parser allocate without limit.
MAX_HEADER_BYTES = 64 << 20
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

# What a damaged or hostile archive can make the zip and npy readers raise; a damaged
# header can claim a zip feature Python lacks (NotImplementedError).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
                NotImplementedError, KeyError)


class ArchiveError(ValueError):
    """A file that is not a readable npclust archive of the expected kind."""


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    The temporary file is flushed and ``fsync``-ed before ``os.replace`` renames it
    over ``path`` (atomic on POSIX and Windows), so a crash or an exception while
    writing leaves any previous file at ``path`` untouched; the temporary file is
    removed.

    Parameters
    ----------
    path : str or os.PathLike
    write : callable
        Receives a binary file object open for writing.

    Raises
    ------
    FileNotFoundError
        The directory of ``path`` does not exist (checked first, so the message
        names ``path`` rather than the temporary file).
    """
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: directory {str(directory)!r} does not exist")
    # Unique per process and thread, so concurrent writers never share a temporary file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def json_value(value):
    """``value`` as plain JSON data (NumPy scalars as numbers, tuples and arrays as lists).

    Parameters
    ----------
    value : object

    Returns
    -------
    object
        Numbers, strings, booleans, None and lists of them stay as they are; anything
        else is returned unchanged for ``json.dumps`` to accept or refuse.
    """
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [json_value(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_value(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.random.Generator):
        # A generator's state is not a hyper-parameter; what it produced is saved.
        return None
    return value


def write_archive(path, kind, header, arrays):
    """Write ``header`` and ``arrays`` to ``path`` as an npclust archive, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Used as given (no ``.npz`` is appended).
    kind : {"model", "checkpoint", "port-reference"}
    header : dict
        JSON-serialisable; ``kind`` and ``format_version`` are added.
    arrays : dict of str to array_like
        Numeric arrays (or numbers), stored under their names.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    contents = {HEADER_MEMBER: np.array(json.dumps(
        {"kind": kind, "format_version": FORMAT_VERSION, **header}))}
    contents.update({name: np.asarray(value) for name, value in arrays.items()})
    atomic_write(path, lambda file: np.savez(file, **contents))


def check_magic(path, magics, what):
    """Raise :class:`ArchiveError` unless the file at ``path`` starts with one of ``magics``.

    NumPy would try to read any other content as a pickle and say so, which misleads.

    Parameters
    ----------
    path : str or os.PathLike
    magics : tuple of bytes
    what : str
        What the file should be, for the message (``"a NumPy .npy file"``).
    """
    with open(path, "rb") as file:
        start = file.read(max(map(len, magics)))
    if not any(start.startswith(magic) for magic in magics):
        raise ArchiveError(f"{str(path)!r} is not {what}" + (" (empty file)" if not start else ""))


def read_archive(path, kind):
    """The header and arrays of the npclust archive at ``path``, checked before use.

    Parameters
    ----------
    path : str or os.PathLike
    kind : {"model", "checkpoint", "port-reference"}
        The kind the caller expects; any other is refused.

    Returns
    -------
    header : dict
        The decoded JSON header (``kind`` and ``format_version`` included).
    arrays : dict of str to ndarray

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ArchiveError
        Not a regular file, not a zip archive, truncated or corrupted, a member that
        is not an ``.npy`` array or whose declared size disagrees with its bytes,
        pickled objects, no header, an oversized or malformed header, another kind,
        or an unknown format version.
    """
    path = Path(path)
    where = repr(str(path))
    label = kind.replace("-", " ")
    if not path.exists():
        raise FileNotFoundError(f"no {label} file at {where}")
    if not path.is_file():
        raise ArchiveError(f"{where} is not a regular file (a directory?), so not a {label} file")
    check_magic(path, ZIP_MAGIC, f"an npclust {label} file (not an .npz archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename[:-len(".npy")]: info for info in archive.infolist()
                       if info.filename.endswith(".npy")}
            not_arrays = sorted(info.filename for info in archive.infolist()
                                if not info.filename.endswith(".npy"))
            if not_arrays:
                raise ArchiveError(f"{where}: archive members that are not arrays: {not_arrays}")
            header = _read_header(archive, members, where, kind)
            arrays = {name: _read_member(archive, info, name, where)
                      for name, info in members.items() if name not in _HEADER_MEMBERS}
    except ArchiveError:
        raise
    except _READ_ERRORS as error:
        raise ArchiveError(f"{where} is truncated or corrupted ({type(error).__name__}: {error})") from None
    return header, arrays


# Version 1 kept each kind's header under its own name.
_HEADER_MEMBERS = (HEADER_MEMBER, "__checkpoint__", "__reference__")


def _read_header(archive, members, where, kind):
    label = kind.replace("-", " ")
    if "__checkpoint__" in members or "__reference__" in members:
        old_kind = "checkpoint" if "__checkpoint__" in members else "port reference"
        raise ArchiveError(
            f"{where} is a {old_kind} file of format version 1 (npclust 0.1), which this "
            f"npclust (format {FORMAT_VERSION}) does not read"
            + ("; delete it to start the fit afresh" if old_kind == "checkpoint" else ""))
    info = members.get(HEADER_MEMBER)
    if info is None:
        raise ArchiveError(f"{where} is an .npz archive but not an npclust {label} file (no header)")
    if info.file_size > MAX_HEADER_BYTES:
        raise ArchiveError(f"{where} has a header of {info.file_size} bytes, more than the "
                           f"{MAX_HEADER_BYTES} an npclust file can have")
    raw = _read_member(archive, info, HEADER_MEMBER, where)
    if raw.ndim != 0 or raw.dtype.kind != "U":
        raise ArchiveError(f"{where} has a corrupted header (not a string)")
    try:
        header = json.loads(str(raw))
    except (ValueError, RecursionError) as error:
        raise ArchiveError(f"{where} has a corrupted header ({type(error).__name__})") from None
    if not isinstance(header, dict):
        raise ArchiveError(f"{where} has a corrupted header (not a JSON object)")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ArchiveError(f"{where} has a corrupted header (format_version {_quoted(version)})")
    # Version-1 model files carry no kind; their layout is version 2's model layout.
    found_kind = header.get("kind", "model" if version == 1 else None)
    if found_kind != kind:
        raise ArchiveError(f"{where} is not an npclust {label} file "
                           f"(it holds kind {_quoted(found_kind)})")
    if version not in (FORMAT_VERSION, 1) or (version == 1 and kind != "model"):
        raise ArchiveError(f"{where} has {label} format version {version}; this npclust "
                           f"(format {FORMAT_VERSION}) cannot read it")
    return header


def _read_member(archive, info, name, where):
    """One ``.npy`` member, its declared shape checked against its size before reading."""
    with archive.open(info) as file:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
        if dtype.hasobject:
            raise ArchiveError(f"{where}: entry {name!r} holds pickled Python objects, "
                               "which npclust never loads")
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        available = info.file_size - file.tell()
        if declared != available:
            raise ArchiveError(f"{where}: entry {name!r} declares shape {shape} of {dtype} "
                               f"({declared} bytes) but holds {available} bytes")
        data = file.read(declared)
    array = np.frombuffer(data, dtype=dtype).copy()
    return array.reshape(shape, order="F" if fortran_order else "C")


def _quoted(value, limit=80):
    """``repr(value)`` cut to ``limit`` characters: header values are untrusted."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
