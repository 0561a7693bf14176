"""The one file format npclust writes: a JSON header and named arrays in an ``.npz`` archive.

Model files, training checkpoints and port-reference vectors are all this format,
told apart by the header's ``kind``:

* ``__npclust__``: a 0-d unicode array holding a JSON object with at least
  ``{"kind": "model" | "checkpoint" | "port-reference", "format_version": 2}``, plus what
  that kind records (see :mod:`npclust.cluster.persistence`,
  :mod:`npclust.files.checkpoint`, :mod:`npclust.cluster.port_vectors`);
* any number of named ``.npy`` members of numbers.

Writing follows :mod:`npclust.files.output` (:func:`atomic_write`: atomic for regular
files, in place for FIFOs and devices). Reading (:func:`read_archive`) treats the
file as untrusted: it never unpickles; it checks the zip magic, that every member is
an ``.npy`` array, the declared sizes against the memory and inflation limits, the
header's size and nesting before parsing it, and each member's declared shape and
dtype against the bytes the member really holds *before* any array is allocated; a
caller's ``check`` sees the header and every shape before the arrays are read. Every
failure is one :class:`ArchiveError` naming the file.

Version history: version 1 (npclust 0.1) had three formats. Its model files
(``__npclust__`` with ``format_version: 1``) still load: their layout is version 2's
model layout without ``kind``. Version-1 checkpoints (``__checkpoint__``) are refused
with a message saying so; version-1 port references (``__reference__``) are files
for ports to read, never read by npclust.
"""

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from .output import atomic_write

__all__ = ["FORMAT_VERSION", "KINDS", "ArchiveError", "atomic_write", "json_value",
           "write_archive", "read_archive", "check_magic", "check_member_sizes",
           "read_npy_header", "read_npy_member", "available_memory", "member_byte_limit"]

FORMAT_VERSION = 2
KINDS = ("model", "checkpoint", "port-reference")
HEADER_MEMBER = "__npclust__"
# A model's header holds parameters and the training history: kilobytes. The bound
# stops a hostile file from making the JSON parser allocate without limit.
MAX_HEADER_BYTES = 64 << 20
# Real headers nest four or five levels (params -> hidden_dims, history -> entry); the
# bound keeps a hostile file from reaching the JSON parser's recursion limit.
MAX_HEADER_DEPTH = 32
# The most bytes one file's arrays may declare together, whatever the memory (also
# bounded by half the available memory, see member_byte_limit).
MAX_DECLARED_BYTES = 1 << 40
# The most a compressed member of an npclust archive may inflate to: npclust writes
# its archives uncompressed, and deflate turns 1 MB into 1 GB of zeros. (Data files,
# which users compress, are bounded by the available memory alone.)
MAX_INFLATED_BYTES = 64 << 20
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

# What a damaged or hostile archive can make the zip and npy readers raise; a damaged
# header can claim a zip feature Python lacks (NotImplementedError).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
                NotImplementedError, KeyError)


class ArchiveError(ValueError):
    """A file that is not a readable npclust archive of the expected kind."""


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


def write_archive(path, kind, header, arrays, what=None):
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
    what : str or None, default=None
        What the path is for, in error messages; ``"<kind> file"`` by default.

    Raises
    ------
    TypeError
        If an array has dtype object (NumPy would pickle it, and archives are read
        without pickles); nothing is written.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    contents = {HEADER_MEMBER: np.array(json.dumps(
        {"kind": kind, "format_version": FORMAT_VERSION, **header}))}
    for name, value in arrays.items():
        contents[name] = np.asarray(value)
        if contents[name].dtype.hasobject:
            # np.savez would pickle it, and read_archive refuses pickles: the file could
            # not be read back.
            raise TypeError(f"array {name!r} has dtype object; an archive holds numeric "
                            "arrays only")
    atomic_write(path, lambda file: np.savez(file, **contents),
                 what=what or f"{kind.replace('-', ' ')} file")


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


def read_archive(path, kind, check=None):
    """The header and arrays of the npclust archive at ``path``, checked before use.

    Nothing the file declares is allocated before it is checked: the zip directory's
    sizes and each member's ``.npy`` header are read first (a few hundred bytes per
    member), bounded (:func:`member_byte_limit`, :data:`MAX_HEADER_BYTES`,
    :data:`MAX_HEADER_DEPTH`), handed to ``check``, and only then are the arrays read,
    each at most its declared size.

    Parameters
    ----------
    path : str or os.PathLike
    kind : {"model", "checkpoint", "port-reference"}
        The kind the caller expects; any other is refused.
    check : callable or None, default=None
        ``check(header, shapes)`` with ``shapes`` a dict of member name to
        ``(shape, dtype)``, called before any array is read; a ``ValueError`` it
        raises becomes an :class:`ArchiveError` naming the file.

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
        is not an ``.npy`` array, whose declared size disagrees with its bytes or
        exceeds the limits, pickled objects, no header, an oversized, too deeply
        nested or malformed header, another kind, an unknown format version, or
        whatever ``check`` refuses.
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
            not_arrays = sorted(_quoted(info.filename, 60) for info in archive.infolist()
                                if not info.filename.endswith(".npy"))
            if not_arrays:
                raise ArchiveError(f"{where}: archive members that are not arrays: "
                                   f"{', '.join(not_arrays[:5])}")
            header = _read_header(archive, members, where, kind)
            entries = {name: info for name, info in members.items() if name not in _HEADER_MEMBERS}
            check_member_sizes(entries.values(), where)
            shapes = {name: read_npy_header(archive, info, name, where)[:2]
                      for name, info in entries.items()}
            if check is not None:
                try:
                    check(header, {name: (shape, dtype) for name, (shape, dtype) in shapes.items()})
                except ArchiveError:
                    raise
                except ValueError as error:
                    raise ArchiveError(f"{where}: {error}") from None
            arrays = {name: read_npy_member(archive, info, name, where)
                      for name, info in entries.items()}
    except ArchiveError:
        raise
    except _READ_ERRORS as error:
        raise ArchiveError(f"{where} is truncated or corrupted "
                           f"({type(error).__name__}: {_quoted(str(error), 120)[1:-1]})") from None
    return header, arrays


# Version 1 kept each kind's header under its own name.
_HEADER_MEMBERS = (HEADER_MEMBER, "__checkpoint__", "__reference__")


def available_memory():
    """Bytes of memory the system could give this process now (``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def member_byte_limit():
    """The most bytes all the arrays of one file may declare together.

    Half of the memory available now, and at most :data:`MAX_DECLARED_BYTES`: a file
    larger than that could not be used anyway, and refusing it up front is a clear
    message instead of a ``MemoryError`` (or the machine swapping) half-way through.
    """
    memory = available_memory()
    return MAX_DECLARED_BYTES if memory is None else min(MAX_DECLARED_BYTES, memory // 2)


def check_member_sizes(infos, where, max_inflated="default"):
    """Refuse zip members whose declared sizes are beyond what can be read.

    Parameters
    ----------
    infos : iterable of zipfile.ZipInfo
    where : str
        The quoted file name, for the message.
    max_inflated : int, None or "default", default="default"
        The most bytes a compressed member may declare (``"default"``:
        :data:`MAX_INFLATED_BYTES`); None for no bound but the total one.

    Raises
    ------
    ArchiveError
        The members together declare more than :func:`member_byte_limit` bytes, or a
        compressed member would inflate to more than ``max_inflated`` (npclust
        writes its archives uncompressed, so a stored member's size is bounded by the
        file itself, while a compressed one can claim gigabytes from a few kilobytes).
    """
    infos = list(infos)
    if max_inflated == "default":
        max_inflated = MAX_INFLATED_BYTES
    total = sum(info.file_size for info in infos)
    limit = member_byte_limit()
    if total > limit:
        raise ArchiveError(f"{where} declares {total} bytes of arrays, more than the {limit} "
                           "bytes npclust reads from one file (half the available memory)")
    for info in infos:
        if (max_inflated is not None and info.compress_type != zipfile.ZIP_STORED
                and info.file_size > max_inflated):
            raise ArchiveError(
                f"{where}: compressed entry {_quoted(info.filename, 60)} would inflate to "
                f"{info.file_size} bytes (from {info.compress_size}), more than the "
                f"{max_inflated} npclust inflates in its own files")


def _header_depth(text):
    """The deepest nesting of JSON arrays and objects in ``text``, found without parsing it.

    Strings are blanked first (they may hold brackets), then the brackets' running
    depth is a cumulative sum: linear time, no recursion, whatever the input.
    """
    # The unrolled form of a JSON string: no backtracking stack per character.
    brackets = re.sub(r'"[^"\\]*(?:\\.[^"\\]*)*"', "", text)
    codes = np.frombuffer(re.sub(r"[^\[\]{}]", "", brackets).encode("ascii"), dtype=np.uint8)
    if codes.size == 0:
        return 0
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


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
    raw = read_npy_member(archive, info, HEADER_MEMBER, where)
    if raw.ndim != 0 or raw.dtype.kind != "U":
        raise ArchiveError(f"{where} has a corrupted header (not a string)")
    text = str(raw)
    depth = _header_depth(text)
    if depth > MAX_HEADER_DEPTH:
        raise ArchiveError(f"{where} has a corrupted header (nested {depth} deep, more than "
                           f"the {MAX_HEADER_DEPTH} an npclust header can be)")
    try:
        header = json.loads(text)
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
        raise ArchiveError(f"{where} has {label} format version {_quoted(version)}; this npclust "
                           f"(format {FORMAT_VERSION}) cannot read it")
    return header


def read_npy_header(archive, info, name, where):
    """``(shape, dtype, fortran_order)`` of one ``.npy`` zip member, checked, its data unread.

    Parameters
    ----------
    archive : zipfile.ZipFile
    info : zipfile.ZipInfo
    name : str
        The member's name, for messages.
    where : str
        The quoted file name, for messages.

    Raises
    ------
    ArchiveError
        Pickled objects, or a declared size other than the bytes the member holds.
    """
    with archive.open(info) as file:
        return _npy_header(file, info, name, where)


def _npy_header(file, info, name, where):
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
    else:
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
    if dtype.hasobject:
        raise ArchiveError(f"{where}: entry {_quoted(name, 60)} holds pickled Python objects, "
                           "which npclust never loads")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    available = info.file_size - file.tell()
    if declared != available:
        raise ArchiveError(f"{where}: entry {_quoted(name, 60)} declares shape "
                           f"{_quoted(shape, 60)} of {dtype} ({declared} bytes) but holds "
                           f"{available} bytes")
    return shape, dtype, fortran_order


def read_npy_member(archive, info, name, where):
    """One ``.npy`` zip member as an array, its declared shape checked before reading.

    The zip directory's size bounds what is inflated (zipfile stops there and then
    checks the CRC), and the ``.npy`` header must declare exactly that many bytes, so
    no member allocates more than its entry in the directory says.

    Parameters
    ----------
    archive : zipfile.ZipFile
    info : zipfile.ZipInfo
    name : str
        The member's name, for messages.
    where : str
        The quoted file name, for messages.

    Returns
    -------
    ndarray
    """
    with archive.open(info) as file:
        shape, dtype, fortran_order = _npy_header(file, info, name, where)
        data = file.read(info.file_size - file.tell())
    array = np.frombuffer(data, dtype=dtype).copy()
    return array.reshape(shape, order="F" if fortran_order else "C")


def _quoted(value, limit=80):
    """``repr(value)`` cut to ``limit`` characters: header values are untrusted."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
