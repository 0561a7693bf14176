"""Model files: which class a file names, and turning a file back into a fitted estimator.

A model file is an npclust archive (:mod:`npclust.files.archive`) of kind ``"model"``:
the header holds the estimator's ``class``, ``params``, fitted ``scalars``,
``history`` and optional ``feature_names_in``; the arrays are each network's
``state_dict()`` entries under ``module/<attribute>/<key>`` (PyTorch's key names,
e.g. ``module/network_/0.weight``) and fitted arrays under ``array/<attribute>``.
Files of format version 1 have the same layout and load unchanged.

The class is looked up in :data:`ESTIMATORS`, never imported by name, and the
estimator's own :meth:`~npclust.cluster.base.ClusteringEstimator.set_state` checks
everything else; a loaded estimator has predicted one sample successfully.
"""

import numpy as np

from ..files.archive import ArchiveError, read_archive
from .dec import DEC, IDEC
from .imsat import IMSAT
from .kmeans import KMeans
from .spectral_clustering import SpectralClustering

__all__ = ["ESTIMATORS", "load"]

#: Estimator classes by name: what a model file's ``class`` may name.
ESTIMATORS = {cls.__name__: cls for cls in (DEC, IDEC, IMSAT, KMeans, SpectralClustering)}


def load(path):
    """Load an estimator saved with ``save``.

    The file is untrusted: its header (class, parameters, fitted numbers, feature
    names) and the declared shape of every array are checked against the class
    before any array is read or any network built, so a header cannot make
    ``load`` allocate more than the file's own arrays. A ``checkpoint`` named in the
    file is ignored (the loaded estimator has ``checkpoint=None``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    IMSAT, DEC, IDEC, KMeans or SpectralClustering
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
    where = repr(str(path))
    checked = {}

    def check(header, shapes):
        checked["estimator"], checked["state"] = _check_header(header, shapes, where)

    _, arrays = read_archive(path, "model", check=check)
    estimator, state = checked["estimator"], checked["state"]
    state["modules"], state["arrays"] = _split_members(arrays, where)
    try:
        estimator.set_state(state)
    except ValueError as error:
        raise ArchiveError(f"{where}: {error}") from None
    _check_predicts(estimator, where)
    return estimator


def _check_header(header, shapes, where):
    """The estimator the header describes, parameters set, and its plain state; nothing built."""
    class_name = header.get("class")
    if not isinstance(class_name, str) or class_name not in ESTIMATORS:
        shown = repr(class_name) if len(repr(class_name)) <= 80 else repr(class_name)[:80] + "..."
        raise ArchiveError(f"{where} names unknown estimator class {shown}; known classes "
                           f"are {sorted(ESTIMATORS)}")
    for section, kind in (("params", dict), ("scalars", dict), ("history", list)):
        if not isinstance(header.get(section, kind()), kind):
            raise ArchiveError(f"{where} has a corrupted header ({section} is not a {kind.__name__})")
    if not all(isinstance(entry, dict) for entry in header.get("history", [])):
        raise ArchiveError(f"{where} has a corrupted header (history entries are not objects)")
    names = header.get("feature_names_in")
    if names is not None and (not isinstance(names, list)
                              or not all(isinstance(name, str) for name in names)):
        raise ArchiveError(f"{where} has a corrupted header (feature_names_in)")
    state = {key: header.get(key) for key in ("params", "scalars", "history", "feature_names_in")}
    state = {key: value for key, value in state.items() if value is not None}
    for name, (_, dtype) in shapes.items():
        _member_name(name, where)
        if dtype.kind not in "biuf":
            raise ArchiveError(f"{where}: {name} has dtype {dtype}, not a real number type")
    estimator = ESTIMATORS[class_name]()
    try:
        estimator._check_state(state, {name: tuple(shape) for name, (shape, _) in shapes.items()})
    except ValueError as error:
        raise ArchiveError(f"{where}: {error}") from None
    return estimator, state


def _member_name(name, where):
    """``(kind, attribute, key)`` of a member named ``module/<attribute>/<key>`` or
    ``array/<attribute>``; anything else is refused."""
    kind, _, rest = name.partition("/")
    attribute, _, key = rest.partition("/")
    if (kind == "module" and attribute and key) or (kind == "array" and attribute and not key):
        return kind, attribute, key
    raise ArchiveError(f"{where}: unexpected entry {name[:80]!r}")


def _split_members(arrays, where):
    """``module/<attribute>/<key>`` and ``array/<attribute>`` members, apart."""
    modules, fitted = {}, {}
    for name, value in arrays.items():
        kind, attribute, key = _member_name(name, where)
        if kind == "module":
            modules.setdefault(attribute, {})[key] = value
        else:
            fitted[attribute] = value
    return modules, fitted


def _check_predicts(estimator, where):
    """The loaded estimator must turn one sample into one probability row."""
    try:
        proba = estimator.predict_proba(np.zeros((1, estimator.n_features_in_)))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
        raise ArchiveError(f"{where}: the saved arrays do not fit {type(estimator).__name__} "
                           f"({type(error).__name__}: {error})") from None
    if proba.shape != (1, estimator.n_clusters) or not np.isfinite(proba).all():
        raise ArchiveError(f"{where}: the saved arrays do not fit {type(estimator).__name__} "
                           f"(predict_proba gave shape {proba.shape})")
