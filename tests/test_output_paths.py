"""Where npclust writes: special files are never clobbered, bad outputs are refused before a fit.

Never a real device or system path: FIFOs made with ``os.mkfifo`` (read by a thread),
pipes the test creates (``/dev/fd/N``), a character-device node made in a temporary
directory, sockets bound in a temporary directory, and a non-root user (``setpriv``)
for read-only directories, which root would write regardless of their mode.
"""

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from npclust.cli import main
from npclust.cluster import KMeans, load
from npclust.files import output
from npclust.files.output import atomic_write, check_output_path

ROOT = Path(__file__).resolve().parent.parent
QUICK_IMSAT = ["--set", "epochs=2", "--set", "hidden_dims=(8,)", "--set", "n_neighbors=3",
               "--set", "batch_size=16"]


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 0.3, (20, 2)), rng.normal(5, 0.3, (20, 2))]
    path = tmp_path / "data.csv"
    path.write_text("a,b\n" + "".join(f"{x},{y}\n" for x, y in X))
    return path


@pytest.fixture
def model():
    return KMeans(n_clusters=2, n_init=1, random_state=0).fit(np.eye(4))


def run(argv, capsys):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def fit_argv(data, *extra):
    return ["fit", data, "--n-clusters", 2, "--method", "kmeans", "--quiet", *extra]


class FifoReader:
    """Reads a FIFO to the end in a thread, as the program at the other end of a pipe would."""

    def __init__(self, path):
        self.path, self.data = path, None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        with open(self.path, "rb") as fifo:
            self.data = fifo.read()

    def result(self):
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the writer never closed the FIFO"
        return self.data


def make_fifo(path):
    os.mkfifo(path)
    return path


def is_fifo(path):
    return stat.S_ISFIFO(os.lstat(path).st_mode)


# ------------------------------------------------------------ streams, in place
def test_labels_to_a_fifo_reach_its_reader_and_the_fifo_stays(data, tmp_path, capsys):
    fifo = make_fifo(tmp_path / "labels.fifo")
    reader = FifoReader(fifo)
    status, out, err = run(fit_argv(data, "--output", fifo), capsys)
    assert status == 0, err
    lines = reader.result().decode().splitlines()
    assert lines[0] == "label" and len(lines) == 41
    assert is_fifo(fifo)  # not replaced by a regular file
    assert sorted(os.listdir(tmp_path)) == ["data.csv", "labels.fifo"]  # no temporary left


def test_save_to_a_fifo_streams_a_loadable_model(model, tmp_path):
    fifo = make_fifo(tmp_path / "model.fifo")
    reader = FifoReader(fifo)
    model.save(fifo)
    copy = tmp_path / "copy.npz"
    copy.write_bytes(reader.result())
    assert is_fifo(fifo)
    np.testing.assert_array_equal(load(copy).predict(np.eye(4)), model.predict(np.eye(4)))


def test_a_character_device_is_written_in_place(model, tmp_path):
    # A stand-in node made here (the null device's numbers), never a node under /dev.
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with open(node, "wb") as probe:
            probe.write(b"x")
    except (PermissionError, OSError) as error:
        pytest.skip(f"cannot make or open a device node here ({error})")
    assert check_output_path(node) == "stream"
    model.save(node)
    atomic_write(node, lambda file: file.write(b"labels"))
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["null"]


def test_output_dash_means_standard_output(data, capsys):
    status, out, err = run(fit_argv(data, "--output", "-"), capsys)
    assert status == 0, err
    assert out.splitlines()[0] == "label" and len(out.splitlines()) == 41


def test_an_open_descriptor_path_is_written_through_the_descriptor(data, tmp_path, capsys):
    read_end, write_end = os.pipe()
    try:
        status, out, err = run(fit_argv(data, "--output", f"/dev/fd/{write_end}"), capsys)
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        lines = pipe.read().decode().splitlines()
    assert status == 0, err
    assert lines[0] == "label" and len(lines) == 41
    assert sorted(os.listdir(tmp_path)) == ["data.csv"]


def _command(argv, **kwargs):
    return subprocess.run([sys.executable, "-m", "npclust.cli", *map(str, argv)], cwd=ROOT,
                          capture_output="stdout" not in kwargs, timeout=60, **kwargs)


def test_a_descriptor_path_is_written_through_the_descriptor_at_its_offset(tmp_path):
    # In this process, unlike the command below: mutmut sees only what a test reaches
    # in the process running it. Reopening /dev/fd/N would write from offset 0 instead.
    log = tmp_path / "log.txt"
    log.write_bytes(b"earlier line\n")
    with open(log, "ab") as appended:
        path = f"/dev/fd/{appended.fileno()}"
        assert check_output_path(path) == "descriptor"
        atomic_write(path, lambda file: file.write(b"labels\n"))
    assert log.read_bytes() == b"earlier line\nlabels\n"


def test_dev_stdout_of_a_pipe_and_of_an_appended_file(data, tmp_path):
    # The command's standard output is a pipe or a file this test made, never a terminal.
    result = _command(fit_argv(data, "--output", "/dev/stdout"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[0] == "label"
    log = tmp_path / "log.txt"
    log.write_text("earlier line\n")
    with open(log, "ab") as appended:
        result = _command(fit_argv(data, "--output", "/dev/stdout"), stdout=appended,
                          stderr=subprocess.PIPE)
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line" and lines[1] == "label" and len(lines) == 42


# ------------------------------------------------------------------ refused
def test_a_directory_as_output_is_refused_before_training(data, tmp_path, capsys):
    target = tmp_path / "out"
    target.mkdir()
    status, out, err = run(["fit", data, "--n-clusters", 2, *QUICK_IMSAT, "--output", target],
                           capsys)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "is a directory" in err and "epoch" not in err


@pytest.mark.parametrize("option", ["--output", "--save", "--checkpoint", "--plot"])
def test_every_output_option_is_checked_before_training(data, tmp_path, capsys, option):
    status, out, err = run(["fit", data, "--n-clusters", 2, *QUICK_IMSAT,
                            option, tmp_path], capsys)
    assert status == 2 and out == "" and "epoch" not in err
    assert option in err and "is a directory" in err


def test_the_checkpoint_given_through_set_is_checked_before_training(data, tmp_path, capsys):
    status, out, err = run(["fit", data, "--n-clusters", 2, *QUICK_IMSAT,
                            "--set", f"checkpoint='{tmp_path}'"], capsys)
    assert status == 2 and "--set checkpoint" in err and "is a directory" in err
    status, out, err = run(["fit", data, "--n-clusters", 2, *QUICK_IMSAT,
                            "--set", f"checkpoint='{tmp_path / 'no' / 'c.npz'}'"], capsys)
    assert status == 2 and "does not exist" in err and "epoch" not in err


def test_a_socket_is_refused(model):
    directory = tempfile.mkdtemp(prefix="npc")  # short: socket paths are limited to ~100 bytes
    try:
        path = os.path.join(directory, "s")
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        try:
            with pytest.raises(OSError, match="is a socket"):
                model.save(path)
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
        finally:
            server.close()
    finally:
        shutil.rmtree(directory)


def test_a_block_device_is_refused_naming_what_it_is(tmp_path, monkeypatch):
    # No block-device node is safe to make, even here (a write would reach a real disk),
    # so the status of one path is made up instead.
    target = tmp_path / "disk"
    real_stat = os.stat

    def stat_of_a_block_device(path, *args, **kwargs):
        if os.fspath(path) == str(target):
            return os.stat_result((stat.S_IFBLK | 0o660,) + (0,) * 9)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_of_a_block_device)
    with pytest.raises(OSError, match="disk' is a block device; npclust writes only regular"):
        check_output_path(target)


def test_atomic_write_calls_its_target_output_unless_told(tmp_path):
    with pytest.raises(IsADirectoryError, match=r"^output '.*' is a directory"):
        atomic_write(tmp_path, lambda file: file.write(b"x"))


def test_the_umask_is_read_without_changing_it_where_proc_is_missing(monkeypatch):
    def no_proc(*args, **kwargs):
        raise FileNotFoundError("no /proc here")

    monkeypatch.setattr(output, "open", no_proc, raising=False)
    previous = os.umask(0o027)
    try:
        assert output._umask() == 0o027
    finally:
        assert os.umask(previous) == 0o027  # and left as it was


def test_a_missing_parent_or_a_file_as_parent_is_refused(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "missing" / "model.npz")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        model.save(tmp_path / "file" / "model.npz")


def test_an_api_checkpoint_that_cannot_be_written_fails_before_training(tmp_path, monkeypatch):
    from npclust.cluster import IMSAT, training

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(training, "Run", no_training)
    X = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(IsADirectoryError, match="checkpoint"):
        IMSAT(n_clusters=2, checkpoint=tmp_path).fit(X)


def test_the_same_file_for_two_outputs_is_refused(data, tmp_path, capsys):
    target = tmp_path / "out.csv"
    status, out, err = run(fit_argv(data, "--output", target, "--save", target), capsys)
    assert status == 2 and "same file" in err


# ---------------------------------------------------------------- symlinks
def test_a_symlink_is_followed_and_stays_a_link(model, tmp_path):
    real = tmp_path / "real.npz"
    real.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert type(load(real)) is KMeans
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "created.npz")
    model.save(dangling)
    assert dangling.is_symlink() and (tmp_path / "created.npz").is_file()


def test_a_symlink_to_a_fifo_is_streamed(model, tmp_path):
    fifo = make_fifo(tmp_path / "fifo")
    link = tmp_path / "link"
    link.symlink_to(fifo)
    reader = FifoReader(fifo)
    model.save(link)
    assert reader.result().startswith(b"PK") and is_fifo(fifo) and link.is_symlink()


def test_a_symlink_loop_is_refused(model, tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(OSError, match="(?i)too many levels of symbolic links"):
        model.save(tmp_path / "a")


# -------------------------------------------------------- temporary files
def test_temporary_names_are_unpredictable_and_planted_links_are_not_followed(model, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    # The names the previous version used (pid and thread), and a few guesses.
    for name in (f".model.npz.{os.getpid()}.{threading.get_ident()}.tmp", ".model.npz.tmp"):
        (tmp_path / name).symlink_to(victim)
    names = []
    original = os.replace

    def spy(source, destination):
        names.append(os.path.basename(source))
        return original(source, destination)

    os.replace = spy
    try:
        model.save(tmp_path / "model.npz")
        model.save(tmp_path / "model.npz")
    finally:
        os.replace = original
    assert victim.read_bytes() == b"precious"
    assert len(set(names)) == 2 and all(name.startswith(".model.npz.") for name in names)
    assert type(load(tmp_path / "model.npz")) is KMeans


def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(model, tmp_path):
    previous = os.umask(0o022)
    try:
        model.save(tmp_path / "new.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o644
        (tmp_path / "kept.npz").write_bytes(b"")
        os.chmod(tmp_path / "kept.npz", 0o640)
        model.save(tmp_path / "kept.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "kept.npz").st_mode) == 0o640
    finally:
        os.umask(previous)


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporaries_of_dead_processes_are_removed_and_others_kept(model, tmp_path):
    prefix = output._temporary_prefix(tmp_path / "model.npz")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    stale = tmp_path / f"{prefix}{_dead_pid()}.abc_123.tmp"
    stale.write_bytes(b"half a model")
    stale_link = tmp_path / f"{prefix}{_dead_pid()}.zzzzzzzz.tmp"
    stale_link.symlink_to(victim)
    live = tmp_path / f"{prefix}{os.getppid()}.abcdefgh.tmp"  # the parent is alive
    live.write_bytes(b"being written")
    other = tmp_path / f".other.npz.{prefix.split('.')[-2]}.{_dead_pid()}.abcdefgh.tmp"
    other.write_bytes(b"another target's")
    model.save(tmp_path / "model.npz")
    assert not stale.exists() and not stale_link.is_symlink()
    assert victim.read_bytes() == b"precious"
    assert live.exists() and other.exists()


_SIGTERM_SCRIPT = """
import os, signal, sys
import numpy as np
from npclust.files import archive

def savez(file, **arrays):
    file.write(b"PK half an archive")
    os.kill(os.getpid(), signal.SIGTERM)  # arrives while the checkpoint is being written
    raise AssertionError("SIGTERM did not interrupt the write")

archive.np.savez = savez
from npclust.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_while_writing_removes_the_temporary_file(data, tmp_path):
    checkpoint = tmp_path / "fit.ckpt"
    result = subprocess.run(
        [sys.executable, "-c", _SIGTERM_SCRIPT, "fit", str(data), "--n-clusters", "2",
         *QUICK_IMSAT, "--quiet", "--checkpoint", str(checkpoint)],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 143, result.stderr
    assert result.stderr.strip() == "npclust fit: terminated"
    assert sorted(os.listdir(tmp_path)) == ["data.csv"]


def test_the_library_installs_no_signal_handler(model, tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    model.save(tmp_path / "model.npz")
    KMeans(n_clusters=2, n_init=1).fit(np.eye(4))
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_command_restores_the_previous_sigterm_handler(data, capsys):
    before = signal.getsignal(signal.SIGTERM)
    run(fit_argv(data), capsys)
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_command_runs_outside_the_main_thread_without_a_sigterm_handler(data, tmp_path):
    # Python lets only the main thread set a handler; a program may call main() from
    # another thread, and it must then still work.
    results = []
    thread = threading.Thread(target=lambda: results.append(
        main([str(arg) for arg in fit_argv(data, "--output", tmp_path / "labels.csv")])))
    thread.start()
    thread.join(timeout=60)
    assert results == [0]
    assert len((tmp_path / "labels.csv").read_text().splitlines()) == 41


# ------------------------------------------------ a failed save loses nothing
def test_labels_reach_standard_output_when_saving_fails(data, tmp_path, capsys, monkeypatch):
    from npclust.cluster import base

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(base, "write_archive", full_disk)
    status, out, err = run(fit_argv(data, "--save", tmp_path / "model.npz"), capsys)
    assert status == 2
    assert out.splitlines()[0] == "label" and len(out.splitlines()) == 41
    assert err.count("\n") == 1 and "No space left" in err
    assert "labels were written to standard output" in err


def test_labels_reach_their_file_when_saving_fails(data, tmp_path, capsys, monkeypatch):
    from npclust.cluster import base

    monkeypatch.setattr(base, "write_archive",
                        lambda *args, **kwargs: (_ for _ in ()).throw(OSError("disk full")))
    labels = tmp_path / "labels.csv"
    status, out, err = run(fit_argv(data, "--save", tmp_path / "model.npz", "--output", labels),
                           capsys)
    assert status == 2 and "labels were written to" in err
    assert labels.read_text().splitlines()[0] == "label"


# ------------------------------------------- read-only places, as a non-root user
_NOBODY = 65534
_CHECK_SCRIPT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("output", sys.argv[1])
output = importlib.util.module_from_spec(spec)
spec.loader.exec_module(output)
try:
    output.atomic_write(sys.argv[2], lambda file: file.write(b"new"))
except OSError as error:
    print(type(error).__name__, error)
else:
    print("written")
"""


def _as_nobody(path):
    """Run atomic_write(path) as an unprivileged user; its one output line."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run as an unprivileged user")
    result = subprocess.run(
        [setpriv, f"--reuid={_NOBODY}", f"--regid={_NOBODY}", "--clear-groups", sys.executable,
         "-S", "-c", _CHECK_SCRIPT, str(ROOT / "npclust" / "files" / "output.py"), str(path)],
        capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        pytest.skip(f"cannot run Python as uid {_NOBODY}: {result.stderr.strip()[-200:]}")
    return result.stdout.strip()


@pytest.fixture
def shared_directory():
    """A directory an unprivileged user can reach (pytest's own is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="npclust-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def test_a_read_only_directory_is_refused_for_an_ordinary_user(shared_directory):
    read_only = shared_directory / "ro"
    read_only.mkdir(mode=0o755)  # owned by root: not writable by the other user
    line = _as_nobody(read_only / "labels.csv")
    assert line.startswith("PermissionError") and "is not writable" in line
    assert list(read_only.iterdir()) == []
    writable = shared_directory / "rw"
    writable.mkdir()
    writable.chmod(0o777)
    assert _as_nobody(writable / "labels.csv") == "written"
    assert (writable / "labels.csv").read_bytes() == b"new"


def test_a_read_only_file_is_not_replaced_for_an_ordinary_user(shared_directory):
    shared_directory.chmod(0o777)
    target = shared_directory / "labels.csv"
    target.write_bytes(b"old")
    target.chmod(0o444)
    line = _as_nobody(target)
    assert line.startswith("PermissionError") and "read-only" in line
    assert target.read_bytes() == b"old"


def test_a_read_only_directory_fails_the_command_before_training(data, tmp_path, capsys,
                                                                   monkeypatch):
    # As root the directory would be writable; the check is what the OS answers.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path)
                        else real_access(path, mode))
    status, out, err = run(["fit", data, "--n-clusters", 2, *QUICK_IMSAT, "--save",
                            tmp_path / "model.npz"], capsys)
    assert status == 2 and "is not writable" in err and "epoch" not in err


# ------------------------------------------------------- more hostile paths
@pytest.mark.parametrize("name, error, message", [
    ("", FileNotFoundError, "the path is empty"),
    ("out/", IsADirectoryError, "'out/' ends with a separator, so names a directory; give a "
                                "file name$"),
])
def test_an_empty_path_or_a_directory_name_is_refused(model, tmp_path, monkeypatch, name, error,
                                                      message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message):
        model.save(name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--output", "--save"])
def test_writing_over_the_data_file_is_refused(data, capsys, option):
    before = data.read_bytes()
    status, out, err = run(fit_argv(data, option, data), capsys)
    assert status == 2 and "same file as the data file" in err
    assert data.read_bytes() == before


def test_predict_over_its_own_model_is_refused(data, model, tmp_path, capsys):
    path = tmp_path / "model.npz"
    KMeans(n_clusters=2, n_init=1, random_state=0).fit(np.eye(2)).save(path)
    status, out, err = run(["predict", path, data, "--output", path], capsys)
    assert status == 2 and "same file as the model file" in err
    assert type(load(path)) is KMeans


def test_a_checkpoint_must_be_a_regular_file(tmp_path):
    from npclust.cluster import IMSAT

    fifo = make_fifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file; a checkpoint is read back"):
        IMSAT(n_clusters=2, checkpoint=fifo).fit(np.random.default_rng(0).normal(size=(30, 3)))
    assert is_fifo(fifo)


@pytest.mark.parametrize("what", ["model", "data"])
def test_reading_a_fifo_is_refused_without_blocking(tmp_path, what):
    from npclust.files.matrix import read_matrix

    fifo = make_fifo(tmp_path / f"input.{'npz' if what == 'model' else 'csv'}")
    with pytest.raises(ValueError, match="not a regular file"):
        load(fifo) if what == "model" else read_matrix(fifo)


_HANG_IN_WRITE_SCRIPT = """
import sys, time
from npclust.files import archive

original = archive.np.savez
calls = []

def savez(file, **arrays):
    calls.append(1)
    if len(calls) == 2:  # the second checkpoint: the first one is complete on disk
        file.write(b"PK half an archive")
        file.flush()
        time.sleep(60)  # killed here
    return original(file, **arrays)

archive.np.savez = savez
from npclust.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_mid_write_leaves_a_temporary_that_the_next_run_removes(data, tmp_path):
    import time

    checkpoint = tmp_path / "fit.ckpt"
    argv = ["fit", str(data), "--n-clusters", "2", *QUICK_IMSAT, "--quiet",
            "--checkpoint", str(checkpoint), "--output", str(tmp_path / "labels.csv")]
    process = subprocess.Popen([sys.executable, "-c", _HANG_IN_WRITE_SCRIPT, *argv], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        # The first checkpoint renamed into place, the second one hanging half-written.
        while not (checkpoint.is_file()
                   and [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
    finally:
        process.kill()  # SIGKILL: no handler runs, the temporary file stays
        process.wait()
    stale = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert len(stale) == 1 and checkpoint.is_file()
    result = subprocess.run([sys.executable, "-m", "npclust.cli", *argv], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # No stale temporary; the checkpoint itself is removed once the fit completes.
    assert sorted(os.listdir(tmp_path)) == ["data.csv", "labels.csv"]


def test_plot_without_matplotlib_is_refused_before_training(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    status, out, err = run(["fit", data, "--n-clusters", 2, *QUICK_IMSAT, "--plot",
                            tmp_path / "fit.png"], capsys)
    assert status == 2 and out == "" and "--plot needs matplotlib" in err and "epoch" not in err
