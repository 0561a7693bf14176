"""Saving and loading fitted estimators as ``.npz`` files, without pickle.

File format (version 1): an uncompressed NumPy ``.npz`` archive holding

* ``__npclust__``: a 0-d unicode array with a JSON header ``{"format_version": 1,
  "class": "IMSAT", "params": {...}, "scalars": {...}, "history": [...]}``;
* ``module/<attribute>/<key>``: each network's ``state_dict()`` entries, with
  PyTorch's key names (``module/network_/0.weight``);
* ``array/<attribute>``: fitted arrays such as ``labels_``.

Nothing in the file is executed: it is read with ``allow_pickle=False``, so an
archive containing Python objects is refused, and every name is checked against
what the estimator class expects.
"""

import json
import os
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["FORMAT_VERSION", "save_estimator", "load", "atomic_write", "json_value"]

FORMAT_VERSION = 1
_HEADER_KEY = "__npclust__"


def _estimator_classes():
    from .cluster import DEC, IDEC, IMSAT, KMeans

    return {cls.__name__: cls for cls in (DEC, IDEC, IMSAT, KMeans)}


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    A crash or an exception while writing leaves any previous file at ``path``
    untouched and removes the temporary file.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def json_value(value):
    """``value`` as plain JSON data (NumPy scalars as numbers, tuples as lists)."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, tuple):
        return [json_value(item) for item in value]
    if isinstance(value, np.random.Generator):
        # A generator's state is not a hyper-parameter; the fitted weights are saved.
        return None
    return value


def save_estimator(estimator, path):
    """Write a fitted estimator to ``path`` atomically (see the module docstring).

    Parameters
    ----------
    estimator : DEC, IDEC or IMSAT
        Fitted.
    path : str or os.PathLike
        The file name is used as given (no ``.npz`` is appended).
    """
    estimator._check_fitted_input(np.zeros((1, getattr(estimator, "n_features_in_", 1))))
    header = {
        "format_version": FORMAT_VERSION,
        "class": type(estimator).__name__,
        "params": {name: json_value(value) for name, value in estimator.get_params().items()},
        "scalars": {name: json_value(getattr(estimator, name)) for name in estimator._fitted_scalars},
        "history": estimator.history_,
    }
    arrays = {_HEADER_KEY: np.array(json.dumps(header))}
    for attribute in estimator._fitted_modules:
        for key, value in getattr(estimator, attribute).state_dict().items():
            arrays[f"module/{attribute}/{key}"] = value
    for attribute in estimator._fitted_arrays:
        value = getattr(estimator, attribute)
        if value is not None:
            arrays[f"array/{attribute}"] = np.asarray(value)
    atomic_write(path, lambda file: np.savez(file, **arrays))


def load(path):
    """Load an estimator saved with ``save``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    DEC, IDEC or IMSAT
        Fitted, predicting exactly as the saved estimator did.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not an npclust model (not an archive, truncated, corrupted,
        containing pickled objects, of an unknown format version or class).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{str(path)!r} is not an npclust model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
    except ValueError as error:
        raise ValueError(f"{str(path)!r} holds pickled objects, which npclust never loads: {error}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(f"{str(path)!r} is not a readable npclust model file ({error})") from None
    if _HEADER_KEY not in contents:
        raise ValueError(f"{str(path)!r} is an .npz archive but not an npclust model (no header)")
    try:
        header = json.loads(str(contents.pop(_HEADER_KEY)))
        version, class_name = header["format_version"], header["class"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{str(path)!r} has a corrupted header ({error})") from None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has model format version {version}; this npclust "
            f"(format {FORMAT_VERSION}) cannot read it"
        )
    classes = _estimator_classes()
    if class_name not in classes:
        raise ValueError(f"{str(path)!r} names unknown estimator class {class_name!r}")
    cls = classes[class_name]
    params = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in header["params"].items()
    }
    estimator = cls(**params)
    for name, value in header["scalars"].items():
        setattr(estimator, name, value)
    estimator.history_ = header["history"]
    for attribute, module in estimator._untrained_modules(estimator.n_features_in_).items():
        prefix = f"module/{attribute}/"
        state = {key[len(prefix):]: value for key, value in contents.items() if key.startswith(prefix)}
        try:
            module.load_state_dict(state)
        except (KeyError, ValueError) as error:
            raise ValueError(f"{str(path)!r}: weights do not fit {class_name}: {error}") from None
        setattr(estimator, attribute, module)
    for attribute in cls._fitted_arrays:
        setattr(estimator, attribute, contents.get(f"array/{attribute}"))
    return estimator
