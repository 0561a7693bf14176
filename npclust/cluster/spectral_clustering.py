"""The SpectralClustering estimator: spectral clustering of the kNN graph, new samples by a vote.

Spectral clustering labels the samples it was fitted on and nothing else: the
eigenvectors of a graph say nothing about a point outside it. This estimator keeps
the training samples and their labels, and gives a new sample the cluster most of its
nearest training samples are in, the way a k-nearest-neighbour classifier would.
"""

import warnings

import numpy as np

from ..lloyd import kmeans
from ..neighbors import nearest_neighbors
from ..spectral import knn_affinity, normalized_cut, spectral_embedding
from ..validation import check_integer, check_option
from .base import ClusteringEstimator, DegenerateResultWarning, in_chunks
from .training import Progress, Stage

__all__ = ["SpectralClustering"]


def _warn_if_duplicates_split(X, labels, n_clusters):
    """Warn when identical samples were put in different clusters.

    A network or k-means gives identical inputs identical labels; the graph does not:
    each copy is a vertex of its own, and with fewer distinct samples than clusters the
    embedding must split some group of copies.
    """
    # Rows compared as raw bytes, sorted once: O(n log n) against the graph's O(n^2 d).
    rows = np.ascontiguousarray(X).view(np.dtype((np.void, X.shape[1] * X.itemsize))).ravel()
    _, groups = np.unique(rows, return_inverse=True)
    n_distinct = int(groups.max()) + 1
    n_pairs = np.unique(groups.ravel() * n_clusters + labels).size
    if n_pairs > n_distinct:
        warnings.warn(
            f"SpectralClustering put identical samples in different clusters: X has "
            f"{n_distinct} distinct samples for n_clusters={n_clusters}"
            + ("; use fewer clusters" if n_distinct < n_clusters else ""),
            DegenerateResultWarning, stacklevel=4)


class SpectralClustering(ClusteringEstimator):
    r"""Spectral clustering of the k-nearest-neighbour graph, with the estimator interface.

    ``fit`` runs :func:`npclust.spectral.spectral_clustering` step by step (the same
    labels for the same seed): the graph of each sample's ``n_neighbors`` nearest
    others with self-tuning weights (:func:`~npclust.spectral.knn_affinity`), the
    eigenvectors of the ``n_clusters`` smallest eigenvalues of its normalised
    Laplacian, rows scaled to unit length (:func:`~npclust.spectral.spectral_embedding`),
    then k-means on them. No network is trained; the method groups samples that a
    chain of near neighbours joins, so clusters need not be convex.

    Parameters
    ----------
    n_clusters : int, default=10
        1 is the trivial clustering (every sample in cluster 0), returned without
        building the graph.
    n_neighbors : int, default=10
        Neighbours per sample in the graph, and the training samples that vote on the
        cluster of a new sample; less than the number of training samples.
    scale_neighbor : int or None, default=None
        Self-tuning scale: the distance to this neighbour (at most ``n_neighbors``);
        None means ``min(7, n_neighbors)``.
    weights : {"self-tuning", "connectivity"}, default="self-tuning"
        Edge weights :math:`\exp(-d_{ij}^2 / (\sigma_i \sigma_j))`, or 1 for every edge.
    n_init : int, default=10
        k-means restarts on the embedding; the lowest inertia is kept.
    solver : {"auto", "arpack", "dense"}, default="auto"
        Eigensolver (see :func:`~npclust.spectral.spectral_embedding`).
    dtype : {"float32", "float64"}, default="float64"
        The type of the kept training samples and embedding and of every output. The
        graph and the neighbour searches are computed in float64 either way; float32
        halves the memory the kept samples take.
    random_state : None, int or numpy.random.Generator
        Seeds the eigensolver's start and the k-means seedings.
    verbose : int, default=0
        1 prints one line with the normalised cut (and ACC/NMI/ARI when ``y`` is given).

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        The spectral clustering of the training samples.
    X_fit_ : ndarray of shape (n_samples, n_features)
        A copy of the training samples, which ``predict``, ``predict_proba`` and
        ``transform`` search; saved in the model file too (n_samples x n_features
        numbers: 70,000 x 784 in float64 is 439 MB).
    embedding_ : ndarray of shape (n_samples, n_clusters)
        The row-normalised spectral embedding the labels were found in (for one
        cluster, a column of ones: the first eigenvector, normalised).
    objective_ : float
        The normalised cut of ``labels_`` on the training graph
        (:func:`~npclust.spectral.normalized_cut`): what the embedding relaxes.
    n_iter_ : int
        Lloyd iterations of the kept k-means run on the embedding (0 for one cluster).
    history_ : list of dict
        One entry with the normalised cut (and ACC/NMI/ARI when ``y`` was given); empty
        for one cluster.

    Notes
    -----
    **New samples.** ``predict_proba(X)`` is the fraction of the ``n_neighbors`` nearest
    training samples of each row that lie in each cluster; ``predict`` is the cluster
    with the most of them, a tie going to the cluster of the nearest neighbour among the
    tied ones (so ``predict`` equals ``predict_proba(X).argmax(axis=1)`` except at ties,
    where the argmax takes the lowest index). A training sample is its own nearest
    neighbour and votes for itself, but the other votes can outweigh it: predicting
    the training samples reproduces ``labels_`` for all but the samples whose
    neighbourhood is mostly in another cluster (99.7-99.9% of the digits for seeds
    0-2; see ``tests/test_spectral_clustering.py``). ``transform(X)`` is the mean of
    ``embedding_`` over the same neighbours: an estimate of where a new sample would
    lie in the embedding, not the embedding of a graph that contains it.

    **Score.** ``score(X)`` is minus the normalised cut of the kNN graph of X (built with
    the fitted graph parameters) under ``predict(X)``; it needs more than
    ``n_neighbors`` samples. On the training samples it is ``-objective_`` when
    ``predict`` reproduces ``labels_``.

    **Cost.** Fit: the exact neighbour search, :math:`O(n^2 d)` flops in blocks of about
    32 MB, then an eigensolver on a sparse graph of about ``n n_neighbors`` edges
    (1,797 digits: 0.1-0.2 s). Prediction: :math:`O(m n d)` for m new samples against the
    n kept ones, in bounded blocks; the model holds the training data.
    """

    _fitted_modules = ()
    _fitted_arrays = ("labels_", "X_fit_", "embedding_")
    _fitted_scalars = ("n_features_in_", "n_iter_", "objective_")

    def __init__(self, n_clusters=10, n_neighbors=10, scale_neighbor=None,
                 weights="self-tuning", n_init=10, solver="auto", dtype="float64",
                 random_state=None, verbose=0):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.scale_neighbor = scale_neighbor
        self.weights = weights
        self.n_init = n_init
        self.solver = solver
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def _validate_params(self, X):
        n_samples = X.shape[0]
        check_integer(self.n_clusters, "n_clusters", 1, n_samples)
        n_neighbors = check_integer(self.n_neighbors, "n_neighbors")
        if not 1 <= n_neighbors <= n_samples - 1:
            raise ValueError(f"n_neighbors must be in [1, {n_samples - 1}] (fewer than the "
                             f"{n_samples} samples: each is joined to that many others), "
                             f"got {n_neighbors}")
        if self.scale_neighbor is not None:
            check_integer(self.scale_neighbor, "scale_neighbor", 1, n_neighbors)
        check_option(self.weights, "weights", ("self-tuning", "connectivity"))
        check_integer(self.n_init, "n_init", 1)
        check_option(self.solver, "solver", ("auto", "arpack", "dense"))

    def _fit(self, X, y, rng):
        # A copy: the model must not change when the caller's array does.
        self.X_fit_ = np.array(X, copy=True)
        if self.n_clusters == 1:
            self.labels_ = np.zeros(X.shape[0], dtype=np.intp)
            self.embedding_ = np.ones((X.shape[0], 1), dtype=X.dtype)
            self.objective_, self.n_iter_, self.history_ = 0.0, 0, []
            return
        # spectral_clustering's steps, in its order of random draws, keeping the graph
        # (for the objective) and the embedding (for transform) it does not return.
        affinity = knn_affinity(X, self.n_neighbors, self.scale_neighbor, self.weights)
        embedding, _ = spectral_embedding(affinity, self.n_clusters, solver=self.solver,
                                          random_state=rng)
        _, self.labels_, _, self.n_iter_ = kmeans(embedding, self.n_clusters, self.n_init,
                                                  random_state=rng)
        self.embedding_ = embedding.astype(X.dtype)
        self.objective_ = normalized_cut(affinity, self.labels_)
        _warn_if_duplicates_split(X, self.labels_, self.n_clusters)
        progress = Progress(self.verbose, y, total_steps=1)
        stage = Stage("spectral", 1, self._fit, unit="run")
        self.history_ = [progress.record("spectral", stage, 1,
                                         {"normalized_cut": self.objective_}, self.labels_)]

    def _build_model(self, n_features, rng):
        return {}

    def _expected_shapes(self, n_features, n_samples):
        return {"array/labels_": (n_samples,), "array/X_fit_": (n_samples, n_features),
                "array/embedding_": (n_samples, self.n_clusters)}

    # ------------------------------------------------------------------ the vote
    def _neighbours(self, X_chunk):
        """Indices of each row's nearest training samples, nearest first."""
        return nearest_neighbors(X_chunk, self.X_fit_, self._fitted_param("n_neighbors"))

    def _votes(self, X_chunk):
        """The labels of each row's nearest training samples, nearest first."""
        return self.labels_[self._neighbours(X_chunk)]

    def _vote_counts(self, votes):
        """Votes per cluster, one column per fitted cluster whatever n_clusters is now."""
        n_rows, n_columns = votes.shape[0], self.embedding_.shape[1]
        flat = votes + n_columns * np.arange(n_rows)[:, None]
        return np.bincount(flat.ravel(), minlength=n_rows * n_columns).reshape(n_rows, n_columns)

    def _soft_assignment(self, X_chunk):
        votes = self._votes(X_chunk)
        return (self._vote_counts(votes) / votes.shape[1]).astype(X_chunk.dtype)

    def _majority(self, X_chunk):
        votes = self._votes(X_chunk)
        counts = self._vote_counts(votes)
        rows = np.arange(votes.shape[0])[:, None]
        # Whether each neighbour votes for a cluster with the most votes; the first such
        # neighbour is the nearest, and its cluster wins a tie.
        for_a_winner = counts[rows, votes] == counts.max(axis=1, keepdims=True)
        return votes[rows[:, 0], for_a_winner.argmax(axis=1)]

    def predict(self, X):
        """Cluster of each sample: the one most of its nearest training samples are in.

        A tie goes to the cluster of the nearest neighbour among those voting for the
        tied clusters.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) of int64
        """
        return self._map_chunks(self._majority, X)

    def _embed(self, X_chunk):
        neighbours = self._neighbours(X_chunk)
        total = np.zeros((X_chunk.shape[0], self.embedding_.shape[1]))
        # One neighbour rank at a time: no (rows, n_neighbors, n_clusters) array.
        for column in neighbours.T:
            total += self.embedding_[column]
        return (total / neighbours.shape[1]).astype(X_chunk.dtype)

    def _score_objective(self, X):
        n_neighbors = self._fitted_param("n_neighbors")
        if X.shape[0] <= n_neighbors:
            raise ValueError(f"score builds the {n_neighbors}-nearest-neighbour graph of X, "
                             f"which needs more than n_neighbors={n_neighbors} samples; X has "
                             f"{X.shape[0]}")
        affinity = knn_affinity(X, n_neighbors, self._fitted_param("scale_neighbor"),
                                self._fitted_param("weights"))
        return normalized_cut(affinity, in_chunks(self._majority, X))
