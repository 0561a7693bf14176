"""Where npclust writes: which targets it may write, and how it writes them without harm.

The rules (``docs/guarantees.md``, "Files written"):

* a **regular file**, or a path where nothing exists yet, is replaced atomically: the
  content goes to a temporary file in the same directory, created exclusively under an
  unpredictable name (``tempfile.mkstemp``: ``O_CREAT | O_EXCL | O_NOFOLLOW``), flushed,
  ``fsync``-ed and renamed over the target, so a reader sees the old file or the new
  one, never half of one;
* a **FIFO** or a **character device** (``/dev/stdout``, a terminal, a pipe made with
  ``mkfifo``) is written in place as a stream: replacing it by a regular file would
  destroy it, and the reader at the other end would get nothing. ``/dev/stdout``,
  ``/dev/stderr``, ``/dev/fd/N`` and ``/proc/self/fd/N`` are the process's own open
  descriptors and are written through them, whatever they are connected to (a
  shell's ``> file`` or ``>> file`` then behaves as the shell promised);
* a **directory**, a **socket**, a **block device** or anything else is refused;
* a **symbolic link** is followed: what is said above applies to the file it points to,
  and the link stays a link (a dangling link's target is created). A loop of links is
  refused;
* the target's directory must exist and be writable, and an existing target must be
  writable: a read-only file is not replaced behind its owner's back.

:func:`check_output_path` applies these rules without writing anything, so a command
can refuse a bad output *before* a long fit; :func:`atomic_write` applies them again
when it writes. Temporary files are removed on every exit path Python sees (an
exception, ``KeyboardInterrupt``, and ``SIGTERM`` where the command line turns it into
an exception); after ``kill -9`` the next write to the same target removes the
temporary files that dead processes on this host left beside it, and never reads them.
"""

import errno
import hashlib
import io
import os
import re
import socket
import stat
import sys
import tempfile
from pathlib import Path

__all__ = ["check_output_path", "atomic_write"]

# Paths that name one of this process's open descriptors rather than a file.
_OWN_DESCRIPTOR = re.compile(r"^/(?:dev/(?:stdout|stderr|fd/\d+)|proc/self/fd/\d+)$")
_STANDARD_DESCRIPTORS = {"/dev/stdout": 1, "/dev/stderr": 2}


def _own_descriptor(path):
    """The descriptor number ``path`` names (``/dev/stdout`` is 1), or None."""
    text = os.path.normpath(os.fspath(path))
    if not _OWN_DESCRIPTOR.match(text):
        return None
    if text in _STANDARD_DESCRIPTORS:
        return _STANDARD_DESCRIPTORS[text]
    return int(text.rsplit("/", 1)[1])


def _kind_of(mode):
    """What a stat mode is, in words, for a refusal."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


def check_output_path(path, what="output"):
    """Check that npclust may write ``path``, and say how it will be written.

    Parameters
    ----------
    path : str or os.PathLike
    what : str, default="output"
        What the path is for (``"--save"``, ``"checkpoint"``), named in the message.

    Returns
    -------
    {"file", "stream", "descriptor"}
        ``"file"``: replaced atomically (a regular file, or nothing there yet);
        ``"stream"``: a FIFO or character device, written in place;
        ``"descriptor"``: one of this process's open descriptors (``/dev/stdout``).

    Raises
    ------
    FileNotFoundError
        The path is empty, or the directory that would hold the file does not exist.
    IsADirectoryError
        ``path`` is a directory, or ends with a separator.
    PermissionError
        The directory is not writable, or the existing file or device is not.
    OSError
        ``path`` is a socket, a block device or another special file, or a loop of
        symbolic links.
    """
    shown = repr(os.fspath(path))
    text = os.fspath(path)
    if not text:
        raise FileNotFoundError(f"{what}: the path is empty")
    if text.endswith(("/", os.sep)):
        raise IsADirectoryError(f"{what} {shown} ends with a separator, so names a directory; "
                                "give a file name")
    number = _own_descriptor(path)
    if number is not None:
        try:
            os.fstat(number)
        except OSError:
            raise OSError(f"{what} {shown}: descriptor {number} is not open") from None
        return "descriptor"
    try:
        status = os.stat(path)  # follows symbolic links: the rules apply to the target
    except FileNotFoundError:
        status = None
    except OSError as error:
        if error.errno == errno.ENOTDIR:
            raise FileNotFoundError(f"{what} {shown}: a parent of it is not a directory") from None
        raise OSError(error.errno, f"{what} {shown}: {error.strerror}") from None
    if status is not None:
        if stat.S_ISFIFO(status.st_mode) or stat.S_ISCHR(status.st_mode):
            if not os.access(path, os.W_OK):
                raise PermissionError(f"{what} {shown} is not writable")
            return "stream"
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(f"{what} {shown} is a directory; give a file name "
                                    "(inside it, for example)")
        if not stat.S_ISREG(status.st_mode):
            raise OSError(f"{what} {shown} is {_kind_of(status.st_mode)}; npclust writes "
                          "only regular files, FIFOs and character devices")
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{what} {shown} is a read-only file; npclust does not "
                                  "replace it (make it writable or choose another name)")
    directory = Path(os.path.realpath(path)).parent
    if not directory.is_dir():
        raise FileNotFoundError(f"{what} {shown}: directory {str(directory)!r} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {shown}: directory {str(directory)!r} is not writable")
    return "file"


def atomic_write(path, write, what="output"):
    """Call ``write(file)`` to produce the content of ``path``, by the rules of this module.

    A regular file (or a new one) is written to a temporary file beside it, flushed and
    ``fsync``-ed, then renamed over ``path`` with ``os.replace`` (atomic on POSIX and
    Windows): a crash or an exception while writing leaves any previous file
    untouched, and the temporary file is removed. A FIFO or character device is
    written in place; ``/dev/stdout`` and its kin through the open descriptor.

    Parameters
    ----------
    path : str or os.PathLike
    write : callable
        Receives a binary file object open for writing.
    what : str, default="output"
        What the path is for, named in error messages.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError, OSError
        As :func:`check_output_path`, checked before ``write`` is called.
    """
    how = check_output_path(path, what)
    if how != "file":
        # Produced in memory first: a stream cannot seek (zip writers do), and a reader
        # at the other end gets all of the content or, if ``write`` fails, nothing.
        buffer = io.BytesIO()
        write(buffer)
        if how == "descriptor":
            _write_descriptor(_own_descriptor(path), buffer.getvalue())
        else:
            # No O_CREAT and no O_TRUNC: the device or FIFO exists and is written as it is.
            descriptor = os.open(path, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
            with os.fdopen(descriptor, "wb") as file:
                file.write(buffer.getvalue())
        return
    target = Path(os.path.realpath(path))
    prefix = _temporary_prefix(target)
    _remove_stale_temporaries(target.parent, prefix)
    mode = _mode_for(target)
    descriptor, temporary = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp",
                                             dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            if hasattr(os, "fchmod"):
                # mkstemp creates the file 0600; the result gets the mode a plain
                # open() would have given it (or the replaced file's mode).
                os.fchmod(file.fileno(), mode)
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(target.parent)


def _write_descriptor(number, content):
    """Write ``content`` through a duplicate of descriptor ``number``: its offset and append
    mode hold, as the shell that opened it promised."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and stream.fileno() == number:
                stream.flush()  # what Python buffered goes first
        except (AttributeError, OSError, ValueError):  # a replaced stream (pytest's capture)
            pass
    with os.fdopen(os.dup(number), "wb") as file:
        file.write(content)


def _temporary_prefix(target):
    """``.<name>.<host>.``: what this target's temporary files start with.

    The host is a short digest of its name, so a directory shared over the network
    never has one host clean up the live temporary file of another. The name is cut
    so the temporary file's name stays within the usual 255-byte limit.
    """
    host = hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()
    return f".{target.name[:160]}.{host}."


_STALE = re.compile(r"(\d+)\.[A-Za-z0-9_]+\.tmp$")


def _remove_stale_temporaries(directory, prefix):
    """Remove temporary files of this target left by processes of this host that have died.

    A live process's temporary file is never touched; a name that is not exactly a
    temporary file's is never touched; an entry is unlinked, never followed, so a
    symbolic link planted under such a name removes only the link.
    """
    try:
        names = [name for name in os.listdir(directory) if name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        match = _STALE.fullmatch(name[len(prefix):])
        if not match or _process_alive(int(match.group(1))):
            continue
        try:
            if not stat.S_ISDIR(os.lstat(os.path.join(directory, name)).st_mode):
                os.unlink(os.path.join(directory, name))
        except OSError:
            pass  # gone already, or not ours to remove: ignored either way


def _process_alive(pid):
    if pid == os.getpid():
        return True  # another thread of this process may be writing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or not knowable: leave its file alone
    return True


def _mode_for(target):
    """The replaced file's permission bits, or those ``open()`` gives a new file."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask():
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
