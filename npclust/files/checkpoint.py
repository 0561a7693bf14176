"""Training checkpoints: the whole state of an unfinished fit in one atomically written archive.

A checkpoint holds what the next step of training depends on (network weights and
buffers, optimizer moments, the random generator's state, the position of the
mini-batch stream, the history so far, the best completed restart), so an
interrupted fit that is resumed ends with exactly the weights and labels of an
uninterrupted one. What goes in is the training loop's business
(:mod:`npclust.cluster.training`); this module stores it and refuses to hand it to a
fit it was not written for.

The archive (:mod:`npclust.files.archive`, kind ``"checkpoint"``) has the header
``{"identity": {"class", "params", "data"}, "progress": {...}, "rng": {...}}``; the
identity names the estimator class, its parameters and a fingerprint of the data.
"""

import hashlib
import numbers
from pathlib import Path

import numpy as np

from .archive import read_archive, write_archive
from .output import check_output_path

__all__ = ["TrainingCheckpoint", "data_fingerprint"]


def data_fingerprint(X):
    """Shape, dtype and a BLAKE2 digest of the bytes of ``X`` (hashed in row chunks).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)

    Returns
    -------
    dict
    """
    digest = hashlib.blake2b(digest_size=16)
    rows_per_chunk = max(1, (1 << 24) // max(1, X.itemsize * X.shape[1]))
    for start in range(0, X.shape[0], rows_per_chunk):
        digest.update(np.ascontiguousarray(X[start:start + rows_per_chunk]).tobytes())
    return {"shape": list(X.shape), "dtype": str(X.dtype), "blake2b": digest.hexdigest()}


class TrainingCheckpoint:
    """Save and restore the training state of one ``fit`` call.

    Parameters
    ----------
    path : str or os.PathLike
    identity : dict
        JSON data that must match for a checkpoint to be resumed: the estimator's
        class and parameters, and :func:`data_fingerprint` of the training data.

    Raises
    ------
    TypeError
        ``path`` is not a path.
    OSError
        The path cannot be written (see :func:`npclust.files.output.check_output_path`):
        checked here, before training, so a long fit is never lost to a checkpoint
        that could not have been written.
    """

    def __init__(self, path, identity):
        if not isinstance(path, (str, Path)):
            raise TypeError(f"checkpoint must be a file path or None, got {type(path).__name__}")
        if check_output_path(path, "checkpoint") != "file":
            # It is read back to resume, which a FIFO or a device cannot do.
            raise OSError(f"checkpoint {str(path)!r} is not a regular file; a checkpoint is "
                          "read back to resume a fit, so it must be one")
        self.path = Path(path)
        self.identity = identity

    def save(self, progress, rng, arrays):
        """Write the state atomically, replacing any previous checkpoint.

        Parameters
        ----------
        progress : dict
            JSON-serialisable training position (restart, stage, history, ...).
        rng : numpy.random.Generator
            Its bit generator's state is stored.
        arrays : dict of str to ndarray or number
        """
        header = {"identity": self.identity, "progress": progress,
                  "rng": rng.bit_generator.state}
        write_archive(self.path, "checkpoint", header, arrays, what="checkpoint")

    def load(self):
        """The saved ``(progress, rng_state, arrays)``, or None when there is no checkpoint file.

        Returns
        -------
        tuple of (dict, dict, dict of str to ndarray) or None

        Raises
        ------
        ValueError
            The file is unreadable, of another format version, was written for
            another estimator class, other parameters or other data, or its header
            or arrays are malformed (one line naming the file, never a ``KeyError``
            from inside the training loop).
        """
        if not self.path.exists():
            return None
        header, arrays = read_archive(self.path, "checkpoint")
        where = f"checkpoint {str(self.path)!r}"
        identity, progress, rng_state = (header.get(key) for key in ("identity", "progress", "rng"))
        if not (isinstance(identity, dict) and isinstance(progress, dict)
                and isinstance(rng_state, dict)):
            raise ValueError(f"{where} is corrupted (its header lacks identity, progress or "
                             "random state)")
        problem = _progress_problem(progress) or _rng_problem(rng_state) or _arrays_problem(arrays)
        if problem:
            raise ValueError(f"{where} is corrupted ({problem}); delete it to start the fit afresh")
        if identity != self.identity:
            differing = [key for key in self.identity if identity.get(key) != self.identity[key]]
            raise ValueError(
                f"{where} was written by a fit with different {' and '.join(differing)}; "
                "delete it or choose another checkpoint path to start afresh"
            )
        return progress, rng_state, arrays


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _progress_problem(progress):
    """What is wrong with a checkpoint's training position, or None.

    Only its form is checked here; the training loop checks that the position lies
    within the fit's restarts and stages.
    """
    if not all(_is_count(progress.get(key)) for key in ("restart", "stage", "unit")):
        return "its training position is malformed"
    if not isinstance(progress.get("stage_done"), bool):
        return "its training position is malformed"
    if not _is_history(progress.get("history")):
        return "its training history is malformed"
    best = progress.get("best")
    if best is not None:
        objective = best.get("objective") if isinstance(best, dict) else None
        if (not isinstance(objective, numbers.Real) or isinstance(objective, bool)
                or not np.isfinite(objective) or not _is_history(best.get("history"))
                or not _is_count(best.get("restart"))):
            return "its best restart is malformed"
    return None


def _is_history(history):
    return isinstance(history, list) and all(isinstance(entry, dict) for entry in history)


def _rng_problem(state):
    """None if ``state`` is a state a NumPy bit generator accepts, else what is wrong."""
    name = state.get("bit_generator")
    generator = getattr(np.random, name, None) if isinstance(name, str) else None
    if not (isinstance(generator, type) and issubclass(generator, np.random.BitGenerator)):
        return "its random state names no NumPy bit generator"
    try:
        generator().state = state
    except (TypeError, ValueError, KeyError, OverflowError):
        return "its random state is malformed"
    return None


def _arrays_problem(arrays):
    for name, value in arrays.items():
        if value.dtype.kind not in "biuf":
            return f"array {name[:60]!r} has dtype {value.dtype}, not numbers"
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return f"array {name[:60]!r} contains NaN or infinity"
    return None
