"""Saving and loading fitted estimators as ``.npz`` files, without pickle.

File format (version 1): an uncompressed NumPy ``.npz`` archive (a zip file of
``.npy`` members) holding

* ``__npclust__``: a 0-d unicode array with a JSON header ``{"format_version": 1,
  "class": "IMSAT", "params": {...}, "scalars": {...}, "history": [...]}`` and,
  when the estimator was fitted on a DataFrame with string column names,
  ``"feature_names_in": [...]``;
* ``module/<attribute>/<key>``: each network's ``state_dict()`` entries, with
  PyTorch's key names (``module/network_/0.weight``);
* ``array/<attribute>``: fitted arrays such as ``labels_``.

Nothing in the file is executed: it is read with ``allow_pickle=False``, so an
archive containing Python objects is refused, the class is looked up in a fixed
table of npclust estimators, and every name is checked against what that class
expects: an unknown parameter, attribute or archive member, a missing weight, a
weight of the wrong shape, a non-numeric or non-finite array makes :func:`load`
raise ``ValueError`` before the estimator is returned. A loaded estimator has
also predicted one sample successfully.

Writes are atomic (:func:`atomic_write`): the archive is written to a temporary
file in the target's directory, flushed to disk, then renamed over the target,
so a crash mid-write leaves the previous file intact.
"""

import json
import os
import threading
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["FORMAT_VERSION", "save_estimator", "load", "atomic_write", "json_value"]

FORMAT_VERSION = 1
_HEADER_KEY = "__npclust__"
_MODULE_PREFIX = "module/"
_ARRAY_PREFIX = "array/"


def _estimator_classes():
    from .cluster import DEC, IDEC, IMSAT, KMeans

    return {cls.__name__: cls for cls in (DEC, IDEC, IMSAT, KMeans)}


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    The temporary file is flushed and ``fsync``-ed before ``os.replace`` renames it
    over ``path`` (atomic on POSIX and Windows), so a crash or an exception while
    writing leaves any previous file at ``path`` untouched; the temporary file is
    removed.

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
    """``value`` as plain JSON data (NumPy scalars as numbers, tuples and arrays as lists)."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [json_value(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_value(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.random.Generator):
        # A generator's state is not a hyper-parameter; the fitted weights are saved.
        return None
    return value


def save_estimator(estimator, path):
    """Write a fitted estimator to ``path`` atomically (see the module docstring).

    Parameters
    ----------
    estimator : IMSAT, DEC, IDEC or KMeans
        Fitted.
    path : str or os.PathLike
        The file name is used as given (no ``.npz`` is appended).

    Raises
    ------
    NotFittedError
        ``estimator`` is not fitted.
    TypeError
        A parameter value cannot be stored as JSON (the message names it).
    FileNotFoundError
        The directory of ``path`` does not exist.
    """
    estimator._check_fitted_input(np.zeros((1, getattr(estimator, "n_features_in_", 1))))
    header = {
        "format_version": FORMAT_VERSION,
        "class": type(estimator).__name__,
        "params": {name: json_value(value) for name, value in estimator.get_params().items()},
        "scalars": {name: json_value(getattr(estimator, name)) for name in estimator._fitted_scalars},
        "history": estimator.history_,
    }
    feature_names = getattr(estimator, "feature_names_in_", None)
    if feature_names is not None:
        header["feature_names_in"] = [str(name) for name in feature_names]
    for section in ("params", "scalars"):
        for name, value in header[section].items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise TypeError(
                    f"cannot save {type(estimator).__name__}: {name}={value!r} is not "
                    "representable in the model file (numbers, strings, booleans, None "
                    "and lists of them are)"
                ) from None
    arrays = {_HEADER_KEY: np.array(json.dumps(header))}
    for attribute in estimator._fitted_modules:
        for key, value in getattr(estimator, attribute).state_dict().items():
            arrays[f"{_MODULE_PREFIX}{attribute}/{key}"] = value
    for attribute in estimator._fitted_arrays:
        value = getattr(estimator, attribute)
        if value is not None:
            arrays[f"{_ARRAY_PREFIX}{attribute}"] = np.asarray(value)
    atomic_write(path, lambda file: np.savez(file, **arrays))


def load(path):
    """Load an estimator saved with ``save``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    IMSAT, DEC, IDEC or KMeans
        Fitted, predicting exactly as the saved estimator did.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    PermissionError
        The file cannot be opened.
    ValueError
        The file is not an npclust model: not a zip archive, truncated, corrupted,
        holding pickled objects, of an unknown format version or class, or with
        parameters, attributes or weights that do not fit the class. The message
        names the file and the problem.
    """
    path = Path(path)
    where = repr(str(path))
    if not path.exists():
        raise FileNotFoundError(f"no model file at {where}")
    if not path.is_file():
        raise ValueError(f"{where} is not a regular file (a directory?), so not a model file")
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ValueError(f"{where} is not an npclust model file (not an .npz archive)")
    contents = _read_archive(path, where)
    header = _read_header(contents.pop(_HEADER_KEY, None), where)
    cls = _estimator_classes()[header["class"]]
    estimator = _build_estimator(cls, header, where)
    n_features = estimator.n_features_in_
    expected_members = set()
    try:
        modules = estimator._untrained_modules(n_features)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as error:
        raise ValueError(f"{where}: the saved parameters do not describe a valid {cls.__name__} "
                         f"({type(error).__name__}: {error})") from None
    for attribute, module in modules.items():
        prefix = f"{_MODULE_PREFIX}{attribute}/"
        state = {key[len(prefix):]: value for key, value in contents.items() if key.startswith(prefix)}
        expected_members.update(prefix + key for key in state)
        for key, value in state.items():
            _check_numbers(value, f"{where}: weight {attribute}/{key}")
        try:
            module.load_state_dict(state)
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{where}: weights do not fit {cls.__name__}: {error}") from None
        setattr(estimator, attribute, module)
    for attribute in cls._fitted_arrays:
        key = f"{_ARRAY_PREFIX}{attribute}"
        value = contents.get(key)
        if value is not None:
            expected_members.add(key)
            _check_numbers(value, f"{where}: {attribute}")
        setattr(estimator, attribute, value)
    unexpected = sorted(set(contents) - expected_members)
    if unexpected:
        raise ValueError(f"{where}: unexpected entries for {cls.__name__}: {unexpected}")
    labels = estimator.labels_
    if labels is None or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels_ is missing or not a 1-D integer array")
    _check_predicts(estimator, where)
    return estimator


def _read_archive(path, where):
    """Every member of the archive as an array, read without pickle."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
        not_arrays = [name for name in members if not name.endswith(".npy")]
        if not_arrays:
            raise ValueError(f"{where}: archive members that are not arrays: {not_arrays}")
        contents = {}
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                try:
                    contents[name] = archive[name]
                except ValueError as error:
                    if "pickle" in str(error):
                        raise ValueError(f"{where}: entry {name!r} holds pickled Python objects, "
                                         "which npclust never loads") from None
                    raise ValueError(f"{where}: entry {name!r} is corrupted ({error})") from None
    # A damaged header can claim a zip feature Python lacks (NotImplementedError).
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError,
            NotImplementedError) as error:
        raise ValueError(f"{where} is truncated or corrupted ({type(error).__name__}: {error})") from None
    return contents


def _read_header(raw, where):
    """The validated JSON header: a dict with a known version and class."""
    if raw is None:
        raise ValueError(f"{where} is an .npz archive but not an npclust model (no header)")
    if raw.ndim != 0 or raw.dtype.kind != "U":
        raise ValueError(f"{where} has a corrupted header (not a string)")
    try:
        header = json.loads(str(raw))
    except ValueError as error:
        raise ValueError(f"{where} has a corrupted header ({error})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where} has a corrupted header (not a JSON object)")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{where} has a corrupted header (format_version {version!r})")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{where} has model format version {version}; this npclust "
            f"(format {FORMAT_VERSION}) cannot read it"
        )
    classes = _estimator_classes()
    class_name = header.get("class")
    if not isinstance(class_name, str) or class_name not in classes:
        raise ValueError(
            f"{where} names unknown estimator class {class_name!r}; known classes are "
            f"{sorted(classes)}"
        )
    for section, kind in (("params", dict), ("scalars", dict), ("history", list)):
        if not isinstance(header.get(section, kind()), kind):
            raise ValueError(f"{where} has a corrupted header ({section} is not a {kind.__name__})")
    names = header.get("feature_names_in")
    if names is not None and (not isinstance(names, list)
                              or not all(isinstance(name, str) for name in names)):
        raise ValueError(f"{where} has a corrupted header (feature_names_in)")
    return header


def _build_estimator(cls, header, where):
    """An instance of ``cls`` with the header's parameters and fitted scalars."""
    params = header.get("params", {})
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise ValueError(
            f"{where}: unknown parameter(s) {unknown} for {cls.__name__}; valid parameters "
            f"are {cls._get_param_names()}"
        )
    estimator = cls(**{name: tuple(value) if isinstance(value, list) else value
                       for name, value in params.items()})
    scalars = header.get("scalars", {})
    unknown = sorted(set(scalars) - set(cls._fitted_scalars))
    if unknown:
        raise ValueError(f"{where}: unknown fitted attribute(s) {unknown} for {cls.__name__}")
    n_features = scalars.get("n_features_in_")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"{where}: n_features_in_ must be a positive integer, got {n_features!r}")
    for name, value in scalars.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{where}: fitted attribute {name} must be a number, got {value!r}")
        setattr(estimator, name, value)
    estimator.history_ = header.get("history", [])
    names = header.get("feature_names_in")
    if names is not None:
        if len(names) != n_features:
            raise ValueError(f"{where}: {len(names)} feature names for {n_features} features")
        estimator.feature_names_in_ = np.asarray(names, dtype=object)
    return estimator


def _check_numbers(value, what):
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{what} has dtype {value.dtype}, not a real number type")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise ValueError(f"{what} contains NaN or infinity")


def _check_predicts(estimator, where):
    """The loaded estimator must turn one sample into one probability row."""
    try:
        proba = estimator.predict_proba(np.zeros((1, estimator.n_features_in_)))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
        raise ValueError(f"{where}: the saved arrays do not fit {type(estimator).__name__} "
                         f"({type(error).__name__}: {error})") from None
    if proba.shape != (1, estimator.n_clusters) or not np.isfinite(proba).all():
        raise ValueError(f"{where}: the saved arrays do not fit {type(estimator).__name__} "
                         f"(predict_proba gave shape {proba.shape})")
