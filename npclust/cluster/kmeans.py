"""The KMeans estimator: k-means with the interface of the deep estimators (the baseline)."""

import numpy as np

from ..lloyd import kmeans, squared_distances
from ..scaling import SQUARED_DISTANCE_RANGE, power_of_two_scale
from ..validation import check_integer, check_positive
from .base import ClusteringEstimator, in_chunks
from .training import Progress, Stage

__all__ = ["KMeans"]


class KMeans(ClusteringEstimator):
    """k-means with the same interface as the deep estimators (the baseline of the demo).

    Parameters
    ----------
    n_clusters : int, default=10
    n_init : int, default=10
        Independent k-means++ seedings; the run with the lowest inertia is kept.
    max_iter : int, default=300
    tol : float, default=1e-4
        Relative convergence threshold (see :func:`kmeans`).
    dtype : {"float32", "float64"}, default="float64"
    random_state : None, int or numpy.random.Generator
    verbose : int, default=0
        1 prints one line with the inertia (and ACC/NMI/ARI when ``y`` is given).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,)
    inertia_ : float
    n_iter_ : int
    history_ : list of dict
        One entry with the inertia (and ACC/NMI/ARI when ``y`` was given).

    ``transform`` returns the Euclidean distances to the centers; ``predict_proba``
    is the hard assignment as one-hot rows (k-means has no soft assignment).
    """

    _fitted_modules = ()
    _fitted_arrays = ("labels_", "cluster_centers_")
    _fitted_scalars = ("n_features_in_", "n_iter_", "inertia_")

    def __init__(self, n_clusters=10, n_init=10, max_iter=300, tol=1e-4, dtype="float64",
                 random_state=None, verbose=0):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def _validate_params(self, X):
        check_integer(self.n_clusters, "n_clusters", 1, X.shape[0])
        check_integer(self.n_init, "n_init", 1)
        check_integer(self.max_iter, "max_iter", 1)
        check_positive(self.tol, "tol", allow_zero=True)

    def _fit(self, X, y, rng):
        self.cluster_centers_, self.labels_, self.inertia_, self.n_iter_ = kmeans(
            X, self.n_clusters, self.n_init, self.max_iter, self.tol, rng)
        progress = Progress(self.verbose, y, total_steps=1)
        self.history_ = [progress.record("kmeans", Stage("kmeans", 1, kmeans, unit="run"), 1,
                                         {"inertia": self.inertia_}, self.labels_)]

    def _build_model(self, n_features, rng):
        return {}

    def _expected_shapes(self, n_features, n_samples):
        return {"array/labels_": (n_samples,), "array/cluster_centers_": (self.n_clusters, n_features)}

    def _scaled_distances(self, X_chunk):
        """Squared distances to the centres, of the chunk and centres scaled by a power of
        two where their dtype would overflow or underflow (see :func:`kmeans`); and the scale."""
        centers = self.cluster_centers_.astype(X_chunk.dtype, copy=False)
        scale = power_of_two_scale(X_chunk, centers,
                                   safe_range=SQUARED_DISTANCE_RANGE.get(X_chunk.dtype))
        if scale != 1.0:
            X_chunk, centers = X_chunk * X_chunk.dtype.type(scale), centers * centers.dtype.type(scale)
        return squared_distances(X_chunk, centers, np.einsum("ij,ij->i", X_chunk, X_chunk)), scale

    def _score_objective(self, X):
        def nearest(chunk):
            distances, scale = self._scaled_distances(chunk)
            return distances.min(axis=1).astype(np.float64) / scale**2

        return float(in_chunks(nearest, X).sum())

    def _embed(self, X_chunk):
        distances, scale = self._scaled_distances(X_chunk)
        distances = np.sqrt(distances)
        return distances if scale == 1.0 else distances / distances.dtype.type(scale)

    def _soft_assignment(self, X_chunk):
        labels = self._scaled_distances(X_chunk)[0].argmin(axis=1)
        # As many columns as fitted centres, whatever n_clusters was set to since.
        one_hot = np.zeros((X_chunk.shape[0], self.cluster_centers_.shape[0]), dtype=X_chunk.dtype)
        one_hot[np.arange(X_chunk.shape[0]), labels] = 1.0
        return one_hot
