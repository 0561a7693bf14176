"""What every npclust clustering estimator shares: the scikit-learn contract and the training loop.

The contract (without importing scikit-learn): ``__init__`` only stores its
arguments; ``fit(X, y=None)`` validates, seeds, trains and sets trailing-underscore
attributes, then returns ``self``; ``predict``, ``predict_proba``, ``fit_predict``,
``transform``; ``get_params`` / ``set_params``.
"""

import inspect
import json
import warnings

import numpy as np

from ..files.archive import json_value, write_archive
from ..validation import check_array, check_is_fitted, check_random_state

__all__ = ["ClusteringEstimator", "DegenerateResultWarning", "in_chunks", "evaluate"]

# Rows per chunk in predict/transform: bounds the activations held at once
# (e.g. 4096 x 1200 float32 = 20 MB per hidden layer) whatever the input size.
PREDICT_CHUNK_ROWS = 4096


class DegenerateResultWarning(UserWarning):
    """A finished fit left clusters empty: fewer clusters hold samples than were asked for.

    Usually a learning rate that is too large, too few epochs, or data with fewer
    distinct groups (or points) than ``n_clusters``.
    """


def _warn_if_degenerate(estimator):
    """Warn when the fit's labels use fewer clusters than ``n_clusters``."""
    labels = getattr(estimator, "labels_", None)
    if labels is None or labels.size == 0:
        return
    used = int(np.count_nonzero(np.bincount(labels, minlength=estimator.n_clusters)))
    if used >= estimator.n_clusters:
        return
    name, n_samples = type(estimator).__name__, labels.size
    message = (f"{name} put all {n_samples} samples in 1 cluster" if used == 1 else
               f"{name} used only {used} of {estimator.n_clusters} clusters "
               f"({estimator.n_clusters - used} empty)")
    warnings.warn(message + "; try a smaller learning rate, more training, or fewer clusters",
                  DegenerateResultWarning, stacklevel=3)


class ClusteringEstimator:
    """Base class of DEC, IDEC and IMSAT.

    Subclasses implement ``_fit(X, y, rng)`` (train and set the fitted attributes),
    ``_soft_assignment(X_chunk)`` (rows sum to 1), ``_embed(X_chunk)`` and
    ``_build_model(n_features, rng)`` (the untrained networks), and name what a fit
    produces in ``_fitted_modules`` (networks), ``_fitted_arrays`` and
    ``_fitted_scalars``: :meth:`get_state` and :meth:`set_state` read and write those.
    """

    _estimator_type = "clusterer"

    # --------------------------------------------------------------- parameters
    @classmethod
    def _get_param_names(cls):
        signature = inspect.signature(cls.__init__)
        return sorted(
            name for name, parameter in signature.parameters.items()
            if name != "self" and parameter.kind == parameter.POSITIONAL_OR_KEYWORD
        )

    def get_params(self, deep=True):
        """Parameters of this estimator, as passed to ``__init__``.

        Parameters
        ----------
        deep : bool, default=True
            Accepted for scikit-learn compatibility; npclust estimators have no
            nested estimators.

        Returns
        -------
        dict of str to object
        """
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set parameters (validated at the next ``fit``).

        Parameters
        ----------
        **params : dict
            Parameter names of ``__init__`` and their new values.

        Returns
        -------
        self
        """
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}; "
                    f"valid parameters are {valid}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = [
            f"{name}={value!r}" for name, value in self.get_params().items()
            if not _same_value(value, defaults.get(name, inspect.Parameter.empty))
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    # ------------------------------------------------------- scikit-learn tags
    # scikit-learn asks an estimator what it is through these methods; they import
    # scikit-learn only when scikit-learn itself calls them.
    def __sklearn_tags__(self):
        """Estimator tags for scikit-learn >= 1.6: an unsupervised clusterer with ``transform``."""
        from sklearn.utils import Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type="clusterer",
            target_tags=TargetTags(required=False),
            # transform's output dtype follows the ``dtype`` parameter, not the input's.
            transformer_tags=TransformerTags(preserves_dtype=[]),
        )

    def _more_tags(self):
        """The same tags for scikit-learn < 1.6."""
        return {"requires_y": False, "preserves_dtype": []}

    def __sklearn_is_fitted__(self):
        return hasattr(self, "n_features_in_")

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Fit the model to ``X``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Not modified. A DataFrame's string column names are kept in
            ``feature_names_in_``.
        y : array_like of shape (n_samples,), optional
            Ground-truth labels, used only to report ACC/NMI in ``history_`` while
            training. They never influence the fit.

        Returns
        -------
        self
        """
        feature_names = _feature_names(X)
        X = check_array(X, dtype=self._dtype(), min_samples=2)
        if y is not None:
            y = np.asarray(y)
            if y.shape != (X.shape[0],):
                raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
        self._validate_params(X)
        # What the fitted attributes describe, whatever set_params does afterwards
        # (scikit-learn's rule): predict and save use these values.
        self._fitted_params = dict(self.get_params())
        self._fit(X, y, check_random_state(self.random_state))
        _warn_if_degenerate(self)
        self.n_features_in_ = X.shape[1]
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    def fit_predict(self, X, y=None):
        """Fit and return ``labels_``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : array_like of shape (n_samples,), optional
            Monitoring only, as in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples,) of int64
        """
        return self.fit(X, y).labels_

    def fit_transform(self, X, y=None):
        """Fit and return ``transform(X)``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : array_like of shape (n_samples,), optional
            Monitoring only, as in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        return self.fit(X, y).transform(X)

    def _fit_arrays(self, X, saved):
        """Arrays computed once from the data before training (none by default); see
        :mod:`npclust.cluster.training`."""
        return {}

    def _fitted_param(self, name):
        """The value parameter ``name`` had in the last fit (its current value if unknown)."""
        return getattr(self, "_fitted_params", {}).get(name, getattr(self, name))

    def _dtype(self, fitted=False):
        requested = self._fitted_param("dtype") if fitted else getattr(self, "dtype", "float32")
        try:
            # np.dtype(None) would silently mean float64.
            dtype = None if requested is None else np.dtype(requested)
        except TypeError:
            dtype = None
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {requested!r}")
        return dtype

    # --------------------------------------------------------------- inference
    def _check_fitted_input(self, X):
        check_is_fitted(self)
        fitted_names = getattr(self, "feature_names_in_", None)
        names = _feature_names(X)
        if fitted_names is not None and names is not None and not np.array_equal(
                names, fitted_names):
            raise ValueError(
                "X has different feature names than in fit: "
                f"{list(names)} instead of {list(fitted_names)}"
            )
        return check_array(X, dtype=self._dtype(fitted=True), n_features=self.n_features_in_,
                           estimator_name=type(self).__name__)

    def _map_chunks(self, function, X):
        return in_chunks(function, self._check_fitted_input(X))

    def predict_proba(self, X):
        """Soft cluster assignments.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_clusters)
            Non-negative rows summing to 1.
        """
        return self._map_chunks(self._soft_assignment, X)

    def predict(self, X):
        """Cluster index of each sample (the most probable cluster).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) of int64
        """
        return self._map_chunks(lambda chunk: self._soft_assignment(chunk).argmax(axis=1), X)

    def score(self, X, y=None):
        """The method's own objective on ``X``, negated so that higher is better.

        What each estimator minimises, evaluated with the fitted model (no labels):
        KMeans, the inertia (sum of squared distances to the nearest center, as
        scikit-learn's ``score``); IMSAT, ``H(Y|X) - mu H(Y)`` of the predictions;
        DEC and IDEC, ``KL(P || Q)`` with P the target distribution of the soft
        assignments Q; SpectralClustering, the normalised cut of the kNN graph of X
        under ``predict(X)``. So ``GridSearchCV`` and ``cross_validate`` work without labels;
        compare scores only between models of the same method and ``n_clusters``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : None
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        float
        """
        return 0.0 - float(self._score_objective(self._check_fitted_input(X)))

    def transform(self, X):
        """The learned representation of each sample (see the estimator's docstring).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        return self._map_chunks(self._embed, X)

    # ---------------------------------------------------------------- state
    def get_state(self):
        """The fitted estimator as plain data: what a model file holds.

        Returns
        -------
        dict
            ``class`` (str), ``params`` (JSON data), ``scalars`` (the fitted numbers),
            ``history``, ``feature_names_in`` (list of str, or None), ``modules``
            (attribute name to the network's ``state_dict()``) and ``arrays``
            (attribute name to fitted array; None-valued attributes are left out).

        Raises
        ------
        NotFittedError
            The estimator is not fitted.
        TypeError
            A parameter value cannot be stored as JSON (the message names it).
        """
        check_is_fitted(self)
        state = {
            "class": type(self).__name__,
            # The parameters of the last fit, not any set since: the file must rebuild
            # the estimator that predicts as this one does.
            "params": {name: json_value(value) for name, value in
                       getattr(self, "_fitted_params", self.get_params()).items()},
            "scalars": {name: json_value(getattr(self, name)) for name in self._fitted_scalars},
            "history": self.history_,
            "feature_names_in": None,
            "modules": {name: getattr(self, name).state_dict() for name in self._fitted_modules},
            "arrays": {name: np.asarray(getattr(self, name)) for name in self._fitted_arrays
                       if getattr(self, name) is not None},
        }
        if getattr(self, "feature_names_in_", None) is not None:
            state["feature_names_in"] = [str(name) for name in self.feature_names_in_]
        for section in ("params", "scalars"):
            for name, value in state[section].items():
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    raise TypeError(
                        f"cannot save {type(self).__name__}: {name}={value!r} is not "
                        "representable in the model file (numbers, strings, booleans, None "
                        "and lists of them are)"
                    ) from None
        return state

    def _expected_shapes(self, n_features, n_samples):
        """The shape of every weight and fitted array a fit with these parameters leaves.

        Keys are the names a model file uses (``module/<attribute>/<key>``,
        ``array/<attribute>``). Computed from the parameters alone, so a file whose
        header asks for a network larger than the arrays it holds is refused before
        anything is allocated.

        Parameters
        ----------
        n_features : int
        n_samples : int
            The length of ``labels_``.

        Returns
        -------
        dict of str to tuple of int
        """
        raise NotImplementedError

    def _check_state(self, state, shapes):
        """Check the plain part of a state (parameters, scalars, names) and its arrays' shapes.

        Sets the parameters on ``self``; builds and allocates nothing, so it is safe
        on an untrusted model file before its arrays are read.

        Parameters
        ----------
        state : dict
            As returned by :meth:`get_state`; ``modules`` and ``arrays`` are not read.
        shapes : dict of str to tuple of int
            The shape of each array, under its model-file name.

        Returns
        -------
        int
            ``n_features_in_``.

        Raises
        ------
        ValueError
            Anything that does not describe a fitted estimator of this class.
        """
        name = type(self).__name__
        valid = self._get_param_names()
        params, scalars = state.get("params", {}), state.get("scalars", {})
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(f"unknown parameter(s) {_shown(unknown)} for {name}; "
                             f"valid parameters are {valid}")
        for key, value in params.items():
            if not _is_plain(value):
                raise ValueError(f"parameter {key} has an invalid value {_shown(value)}")
        values = {key: tuple(value) if isinstance(value, list) else value
                  for key, value in params.items()}
        if "checkpoint" in valid:
            # A model file never names a checkpoint: refitting a loaded (possibly
            # untrusted) model must not write to a path chosen inside the file.
            values["checkpoint"] = None
        self.set_params(**values)
        unknown = sorted(set(scalars) - set(self._fitted_scalars))
        if unknown:
            raise ValueError(f"unknown fitted attribute(s) {_shown(unknown)} for {name}")
        n_features = scalars.get("n_features_in_")
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"n_features_in_ must be a positive integer, got {_shown(n_features)}")
        for key, value in scalars.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not np.isfinite(value)):
                raise ValueError(f"fitted attribute {key} must be a finite number, "
                                 f"got {_shown(value)}")
        names = state.get("feature_names_in")
        if names is not None and len(names) != n_features:
            raise ValueError(f"{len(names)} feature names for {n_features} features")
        labels = shapes.get("array/labels_")
        if labels is None or len(labels) != 1:
            raise ValueError("labels_ is missing or not a 1-D integer array")
        try:
            # The parameters pass the checks a fit makes, for the data the labels came from.
            self._validate_params(_DataShape(max(2, labels[0]), n_features))
            self._dtype()
            check_random_state(0 if self.random_state is None else self.random_state)
        except (TypeError, ValueError) as error:
            raise ValueError(f"the saved parameters are invalid ({error})") from None
        expected = self._expected_shapes(n_features, labels[0])
        missing = sorted(set(expected) - set(shapes))
        if missing:
            raise ValueError(f"weights do not fit {name}: missing {_shown(missing)}")
        unexpected = sorted(set(shapes) - set(expected))
        if unexpected:
            raise ValueError(f"unexpected entries for {name}: {_shown(unexpected)}")
        for key, shape in expected.items():
            if tuple(shapes[key]) != shape:
                raise ValueError(f"weights do not fit {name}: {key} has shape "
                                 f"{_shown(tuple(shapes[key]))}, the saved parameters and "
                                 f"n_features_in_={n_features} need {shape}")
        return n_features

    def set_state(self, state):
        """Become the fitted estimator ``state`` describes (the inverse of :meth:`get_state`).

        ``state`` may come from an untrusted file: every name, value and shape is
        checked against what this class expects (:meth:`_check_state`) before any
        network is built. A ``checkpoint`` parameter is not restored (it is set to
        None): a state never names a file to write.

        Parameters
        ----------
        state : dict
            As returned by :meth:`get_state`.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Unknown parameters or attributes, values of the wrong type or range,
            weights that do not fit the networks the parameters describe, non-finite
            numbers.
        """
        modules, arrays = state.get("modules", {}), state.get("arrays", {})
        shapes = {f"module/{attribute}/{key}": np.shape(value)
                  for attribute, weights in modules.items() for key, value in weights.items()}
        shapes.update({f"array/{attribute}": np.shape(value) for attribute, value in arrays.items()
                       if value is not None})
        n_features = self._check_state(state, shapes)
        scalars, names = state.get("scalars", {}), state.get("feature_names_in")
        try:
            model = self._build_model(n_features, rng=0)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as error:
            raise ValueError(f"the saved parameters do not describe a valid {type(self).__name__} "
                             f"({type(error).__name__}: {error})") from None
        for attribute in self._fitted_modules:
            weights = modules.get(attribute, {})
            for key, value in weights.items():
                _check_numbers(value, f"weight {attribute}/{key}")
            module = model[attribute.rstrip("_")]
            try:
                module.load_state_dict(weights)
            except (KeyError, ValueError, TypeError) as error:
                raise ValueError(f"weights do not fit {type(self).__name__}: {error}") from None
            setattr(self, attribute, module)
        for attribute in self._fitted_arrays:
            value = arrays.get(attribute)
            if value is not None:
                _check_numbers(value, attribute)
            setattr(self, attribute, value)
        labels = getattr(self, "labels_", None)
        if labels is None or labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError("labels_ is missing or not a 1-D integer array")
        if labels.size and (labels.min() < 0 or labels.max() >= self.n_clusters):
            raise ValueError(f"labels_ holds cluster indices outside [0, {self.n_clusters})")
        for key, value in scalars.items():
            setattr(self, key, value)
        self.history_ = state.get("history", [])
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        self._fitted_params = dict(self.get_params())
        return self

    def save(self, path):
        """Save the fitted estimator to ``path`` (an npclust archive, no pickle).

        The file records ``checkpoint=None`` whatever the estimator's ``checkpoint``:
        a model file is meant to be shared, and must not carry a local path that a
        refit of the loaded model would write to.

        Parameters
        ----------
        path : str or os.PathLike
            Used as given (no ``.npz`` is appended); written atomically if it is a
            regular file or new, in place if it is a FIFO or character device, and
            refused if it is a directory or another special file (see
            :mod:`npclust.files.output`). Load it with :func:`npclust.load`.
        """
        state = self.get_state()
        if "checkpoint" in state["params"]:
            state["params"]["checkpoint"] = None
        arrays = {f"module/{attribute}/{key}": value
                  for attribute, weights in state.pop("modules").items()
                  for key, value in weights.items()}
        arrays.update({f"array/{attribute}": value
                       for attribute, value in state.pop("arrays").items()})
        if state["feature_names_in"] is None:
            del state["feature_names_in"]
        write_archive(path, "model", state, arrays)


class _DataShape:
    """Stands in for the training data where parameter checks need only its shape."""

    def __init__(self, n_samples, n_features):
        self.shape = (n_samples, n_features)


def _is_plain(value, depth=0):
    """JSON data a parameter can hold: numbers, strings, booleans, None, short flat lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return not isinstance(value, str) or len(value) <= 1000
    return (isinstance(value, list) and depth == 0 and len(value) <= 1000
            and all(_is_plain(item, depth + 1) for item in value))


def _shown(value, limit=80):
    """``repr(value)`` cut to ``limit`` characters: values from a file are untrusted."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def linear_stack_shapes(prefix, widths, batch_norm=False):
    """Model-file shapes of a Sequential of Linear layers through ``widths``.

    Each hidden layer is Linear, optional BatchNorm1d, then an activation (one index
    each), as the estimators build them.

    Parameters
    ----------
    prefix : str
        ``module/<attribute>/``.
    widths : sequence of int
        Input width, hidden widths, output width.
    batch_norm : bool, default=False

    Returns
    -------
    dict of str to tuple of int
    """
    shapes, index = {}, 0
    for position, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        shapes[f"{prefix}{index}.weight"] = (width_out, width_in)
        shapes[f"{prefix}{index}.bias"] = (width_out,)
        if position == len(widths) - 2:
            break
        if batch_norm:
            index += 1
            for key in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{prefix}{index}.{key}"] = (width_out,)
            shapes[f"{prefix}{index}.num_batches_tracked"] = ()
        index += 2
    return shapes


def in_chunks(function, X):
    """``function`` applied to bounded-size row chunks of ``X``, results concatenated."""
    return np.concatenate([
        function(X[start:start + PREDICT_CHUNK_ROWS])
        for start in range(0, X.shape[0], PREDICT_CHUNK_ROWS)
    ])


def evaluate(module, X):
    """Evaluation-mode output of ``module`` on all of ``X``, computed in bounded-size chunks."""
    module.eval()
    return in_chunks(module, X)


def _feature_names(X):
    """A DataFrame's column names as an object array if they are all strings, else None.

    Non-string column names (pandas' default integer range) are positions, not names,
    as in scikit-learn.
    """
    columns = getattr(X, "columns", None)
    if columns is None or isinstance(X, np.ndarray):
        return None
    names = np.asarray(list(columns), dtype=object)
    if names.ndim != 1 or not all(isinstance(name, str) for name in names):
        return None
    return names


def _same_value(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except (ValueError, TypeError):
        return a is b


def _check_numbers(value, what):
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{what} has dtype {value.dtype}, not a real number type")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise ValueError(f"{what} contains NaN or infinity")
