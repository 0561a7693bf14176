"""What every npclust clustering estimator shares: the scikit-learn contract and the training loop.

The contract (without importing scikit-learn): ``__init__`` only stores its
arguments; ``fit(X, y=None)`` validates, seeds, trains and sets trailing-underscore
attributes, then returns ``self``; ``predict``, ``predict_proba``, ``fit_predict``,
``transform``; ``get_params`` / ``set_params``.
"""

import inspect
import logging
import sys
import time

import numpy as np

from .. import metrics
from ..validation import check_array, check_is_fitted

__all__ = ["ClusteringEstimator", "TrainingLog", "in_chunks", "evaluate", "minibatches",
           "check_finite_loss"]

logger = logging.getLogger("npclust")

# Rows per chunk in predict/transform: bounds the activations held at once
# (e.g. 4096 x 1200 float32 = 20 MB per hidden layer) whatever the input size.
PREDICT_CHUNK_ROWS = 4096


class ClusteringEstimator:
    """Base class of DEC, IDEC and IMSAT.

    Subclasses implement ``_fit(X, y, rng)`` (train and set the fitted attributes),
    ``_soft_assignment(X_chunk)`` (rows sum to 1) and ``_embed(X_chunk)``.
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
        """Set parameters (validated at the next ``fit``). Returns self."""
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
        from ..random import check_random_state

        feature_names = _feature_names(X)
        X = check_array(X, dtype=self._dtype(), min_samples=2)
        if y is not None:
            y = np.asarray(y)
            if y.shape != (X.shape[0],):
                raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
        self._validate_params(X)
        self._fit(X, y, check_random_state(self.random_state))
        self.n_features_in_ = X.shape[1]
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    def fit_predict(self, X, y=None):
        """Fit and return ``labels_``."""
        return self.fit(X, y).labels_

    def fit_transform(self, X, y=None):
        """Fit and return ``transform(X)``."""
        return self.fit(X, y).transform(X)

    def _dtype(self):
        requested = getattr(self, "dtype", "float32")
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
        return check_array(X, dtype=self._dtype(), n_features=self.n_features_in_,
                           estimator_name=type(self).__name__)

    def _map_chunks(self, function, X):
        return in_chunks(function, self._check_fitted_input(X))

    def predict_proba(self, X):
        """Soft cluster assignments.

        Returns
        -------
        ndarray of shape (n_samples, n_clusters)
            Non-negative rows summing to 1.
        """
        return self._map_chunks(self._soft_assignment, X)

    def predict(self, X):
        """Cluster index of each sample (the most probable cluster).

        Returns
        -------
        ndarray of shape (n_samples,) of int64
        """
        return self._map_chunks(lambda chunk: self._soft_assignment(chunk).argmax(axis=1), X)

    def transform(self, X):
        """The learned representation of each sample (see the estimator's docstring)."""
        return self._map_chunks(self._embed, X)

    # ---------------------------------------------------------------- saving
    def save(self, path):
        """Save the fitted estimator to ``path`` (``.npz``, no pickle); see :func:`npclust.load`."""
        from ..io import save_estimator

        save_estimator(self, path)


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


class TrainingLog:
    """Per-epoch history and optional progress lines with elapsed and remaining time.

    Parameters
    ----------
    total_epochs : int
    verbose : int
        0 prints nothing; 1 prints one line per epoch to stderr. Lines also go to the
        ``npclust`` logger at INFO level.
    y : ndarray or None
        Ground-truth labels for monitoring only (ACC/NMI/ARI in the history).
    stage : str
        Label for the lines, e.g. ``"pretrain"``.
    """

    def __init__(self, total_epochs, verbose=0, y=None, stage="train"):
        self.total_epochs, self.verbose, self.y, self.stage = total_epochs, verbose, y, stage
        self.records = []
        self._start = time.perf_counter()

    def record(self, epoch, labels=None, **values):
        """Store one epoch's values (and label scores when y is known); print if verbose."""
        entry = {"stage": self.stage, "epoch": epoch}
        entry.update({name: int(value) if isinstance(value, (int, np.integer)) else float(value)
                      for name, value in values.items()})
        if self.y is not None and labels is not None:
            entry["acc"] = metrics.clustering_accuracy(self.y, labels)
            entry["nmi"] = metrics.normalized_mutual_info_score(self.y, labels)
            entry["ari"] = metrics.adjusted_rand_score(self.y, labels)
        elapsed = time.perf_counter() - self._start
        entry["elapsed"] = elapsed
        self.records.append(entry)
        remaining = elapsed / epoch * (self.total_epochs - epoch) if epoch else 0.0
        shown = "  ".join(
            f"{name} {value}" if isinstance(value, int) else f"{name} {value:.4f}"
            for name, value in entry.items()
            if name not in ("stage", "epoch", "elapsed")
        )
        line = (
            f"[{self.stage}] epoch {epoch}/{self.total_epochs}  {shown}  "
            f"elapsed {elapsed:.1f}s  remaining {remaining:.1f}s"
        )
        logger.info(line)
        if self.verbose:
            # Progress goes to stderr so that labels written to stdout stay clean.
            print(line, file=sys.stderr, flush=True)


def report_choice(verbose, message):
    """A one-off progress message (e.g. which restart was kept): logged, and printed if verbose."""
    logger.info(message)
    if verbose:
        print(message, file=sys.stderr, flush=True)


def check_finite_loss(value, what, restore):
    """Stop training on a NaN or infinite loss, after restoring the last good weights.

    Parameters
    ----------
    value : float
    what : str
        Which loss, for the message.
    restore : callable
        Puts the last good weights back before the error propagates.
    """
    if not np.isfinite(value):
        restore()
        raise FloatingPointError(
            f"{what} became {value} during training; the weights from the last "
            "completed epoch were restored. Try a smaller learning rate or check "
            "the input scale."
        )


def batch_boundaries(n_samples, batch_size):
    """Start/stop offsets of consecutive batches covering ``n_samples`` rows.

    A final batch of one row cannot be batch-normalised, so it is folded into the
    previous one.
    """
    stops = list(range(batch_size, n_samples, batch_size))
    if stops and n_samples - stops[-1] < 2:
        stops.pop()
    return [0, *stops, n_samples]


def minibatches(n_samples, batch_size, rng):
    """Shuffled index batches covering every sample once (the last may be smaller).

    Indices within a batch are sorted so gathering rows from a memory-mapped
    array reads the file forward.
    """
    order = rng.permutation(n_samples)
    boundaries = batch_boundaries(n_samples, batch_size)
    for start, stop in zip(boundaries[:-1], boundaries[1:]):
        yield np.sort(order[start:stop])


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
