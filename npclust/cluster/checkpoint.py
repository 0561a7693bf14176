"""Resumable training: an estimator's whole training state in one atomically written file.

A checkpoint holds what the next step of training depends on: network weights and
buffers, optimizer moments and step count, the random generator's state, the
position in the current pass over the data, the history so far and any stage
results (the best completed restart). Restoring all of it makes an interrupted fit
that is resumed end with exactly the weights and labels of an uninterrupted one.

File layout: an ``.npz`` archive (no pickle) with a JSON header under
``__checkpoint__`` and named arrays. The header records the estimator class, its
training parameters and a fingerprint of the data, so a checkpoint is never
resumed with other data or settings.
"""

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from ..io import atomic_write, json_value

__all__ = ["TrainingCheckpoint", "BatchStream", "open_checkpoint"]

_HEADER_KEY = "__checkpoint__"
_CHECKPOINT_VERSION = 1
# Parameters that change how a fit reports or where it saves, not what it computes.
_NOT_IDENTITY = ("verbose", "checkpoint")


def data_fingerprint(X):
    """Shape, dtype and a BLAKE2 digest of the bytes of ``X`` (hashed in row chunks)."""
    digest = hashlib.blake2b(digest_size=16)
    rows_per_chunk = max(1, (1 << 24) // max(1, X.itemsize * X.shape[1]))
    for start in range(0, X.shape[0], rows_per_chunk):
        digest.update(np.ascontiguousarray(X[start:start + rows_per_chunk]).tobytes())
    return {"shape": list(X.shape), "dtype": str(X.dtype), "blake2b": digest.hexdigest()}


def open_checkpoint(estimator, X):
    """The estimator's :class:`TrainingCheckpoint` for ``X``, or None if it has no ``checkpoint``."""
    path = getattr(estimator, "checkpoint", None)
    if path is None:
        return None
    if not isinstance(path, (str, Path)):
        raise TypeError(f"checkpoint must be a file path or None, got {type(path).__name__}")
    return TrainingCheckpoint(path, estimator, X)


class TrainingCheckpoint:
    """Save and restore the training state of one ``fit`` call.

    Parameters
    ----------
    path : str or os.PathLike
    estimator : ClusteringEstimator
        The estimator being fitted; its class and parameters identify the run.
    X : ndarray
        The training data, fingerprinted.
    """

    def __init__(self, path, estimator, X):
        self.path = Path(path)
        params = {name: json_value(value) for name, value in estimator.get_params().items()
                  if name not in _NOT_IDENTITY}
        self.identity = {"class": type(estimator).__name__, "params": params,
                         "data": data_fingerprint(X)}

    def save(self, progress, rng, arrays):
        """Write the state atomically, replacing any previous checkpoint.

        Parameters
        ----------
        progress : dict
            JSON-serialisable training position (stage, epoch, history, ...).
        rng : numpy.random.Generator
            Its bit generator's state is stored.
        arrays : dict of str to ndarray or number
        """
        header = {"version": _CHECKPOINT_VERSION, "identity": self.identity,
                  "progress": progress, "rng": rng.bit_generator.state}
        contents = {_HEADER_KEY: np.array(json.dumps(header))}
        contents.update({name: np.asarray(value) for name, value in arrays.items()})
        atomic_write(self.path, lambda file: np.savez(file, **contents))

    def load(self):
        """The saved ``(progress, arrays)``, or None when there is no checkpoint file.

        ``progress["rng_state"]`` is the random generator's state, for the caller to
        restore once it has rebuilt its networks (building them draws from the generator).

        Raises
        ------
        ValueError
            The file is unreadable, or was written for another estimator class,
            other parameters or other data.
        """
        if not self.path.exists():
            return None
        where = f"checkpoint {str(self.path)!r}"
        if not zipfile.is_zipfile(self.path):
            raise ValueError(f"{where} is not a checkpoint file")
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            header = json.loads(str(arrays.pop(_HEADER_KEY)))
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile,
                NotImplementedError) as error:
            raise ValueError(f"{where} is unreadable or corrupted ({error})") from None
        if header.get("version") != _CHECKPOINT_VERSION:
            raise ValueError(f"{where} has unknown version {header.get('version')!r}")
        if header["identity"] != self.identity:
            differing = [key for key in self.identity
                         if header["identity"].get(key) != self.identity[key]]
            raise ValueError(
                f"{where} was written by a fit with different {' and '.join(differing)}; "
                "delete it or choose another checkpoint path to start afresh"
            )
        return {**header["progress"], "rng_state": header["rng"]}, arrays


def prefixed(prefix, state):
    """``{prefix/key: value}`` for storing a state dict in a checkpoint."""
    return {f"{prefix}/{key}": value for key, value in state.items()}


def unprefixed(prefix, arrays):
    """The entries of ``arrays`` stored under ``prefix/``, with the prefix removed."""
    start = len(prefix) + 1
    return {key[start:]: value for key, value in arrays.items() if key.startswith(prefix + "/")}


class BatchStream:
    """Endless shuffled mini-batches, one pass over the data after another, resumable.

    Unlike a generator, its position (the current permutation and the next batch)
    can be saved in a checkpoint and restored.
    """

    def __init__(self, n_samples, batch_size, rng):
        from .base import batch_boundaries

        self.n_samples, self.rng = n_samples, rng
        self.boundaries = batch_boundaries(n_samples, batch_size)
        self.order, self.position = None, 0

    def next(self):
        """The next batch of sorted sample indices."""
        if self.order is None or self.position == len(self.boundaries) - 1:
            self.order, self.position = self.rng.permutation(self.n_samples), 0
        start, stop = self.boundaries[self.position], self.boundaries[self.position + 1]
        self.position += 1
        return np.sort(self.order[start:stop])

    def state(self):
        """Arrays that restore the position with :meth:`restore`."""
        order = self.order if self.order is not None else np.zeros(0, dtype=np.int64)
        return {"order": order, "position": self.position}

    def restore(self, state):
        order = np.asarray(state["order"])
        self.order = order if order.size else None
        self.position = int(state["position"])
