"""IMSAT: Information Maximizing Self-Augmented Training (Hu et al., ICML 2017)."""

import time

import numpy as np

from .. import nn
from ..functional import log_softmax, log_softmax_backward, softmax
from ..losses import kl_div, mutual_information
from ..neighbors import kth_neighbor_distance
from ..optim import Adam
from ..validation import check_integer, check_layer_widths, check_positive, largest_magnitude
from .base import ClusteringEstimator, evaluate, in_chunks, linear_stack_shapes
from .training import Stage, batch_boundaries, fit_restarts, report

__all__ = ["IMSAT"]


class IMSAT(ClusteringEstimator):
    """Deep clustering by maximising the mutual information between inputs and clusters.

    A multilayer perceptron maps each sample to cluster logits; its hidden layers are
    Linear → BatchNorm1d → ReLU and its last layer is *linear*, so the logits are
    unbounded and the softmax can become confident (a sigmoid before the softmax
    would cap the largest probability, see ``docs/derivations.md``, section 9). The loss
    minimised over mini-batches is

        R_VAT + lam * (H(Y|X) - mu * H(Y)),

    where H(Y|X) is the mean entropy of the per-sample predictions (small when each
    prediction is confident), H(Y) the entropy of the mean prediction (large when the
    clusters are balanced), and R_VAT the virtual adversarial smoothness penalty: the
    KL divergence between the prediction at x and at x + r_adv, where r_adv is the
    direction that changes the prediction most (one power iteration), scaled per sample
    to ``eps_scale`` times the distance to the ``n_neighbors``-th nearest neighbour.

    Parameters
    ----------
    n_clusters : int, default=10
        1 is the trivial clustering (every sample in one cluster), returned without
        training.
    hidden_dims : tuple of int, default=(1200, 1200)
    mu : float, default=4.0
        Weight of the marginal entropy H(Y) (cluster balance).
    lam : float, default=0.1
        Weight of the information term relative to R_VAT.
    vat : bool, default=True
        Use the VAT penalty (else the loss is the information term alone).
    xi : float, default=10.0
        Length of the random probe in the power iteration.
    eps_scale : float, default=0.25
        VAT radius as a fraction of each sample's distance to its ``n_neighbors``-th
        nearest neighbour, Hu et al.'s value. Larger radii suit the 8x8 digits but
        make the network predict the uniform distribution on 784-, 100- and 40-d data
        (measured on four data sets, ``docs/methods.md``).
    n_neighbors : int, default=10
    epochs : int, default=50
        Epochs the kept network is trained in all (Hu et al.'s 50).
    restart_epochs : int, default=15
        With ``n_init > 1``, each restart trains ``min(restart_epochs, epochs)`` epochs;
        the restart with the lowest objective is then trained on alone, with a fresh
        Adam (stage ``"train on"``), to ``epochs`` epochs in all. Short restarts rank
        runs well on some data and 50 epochs beat 15 on 784-d images
        (``docs/methods.md``): 4 x 15 epochs then 35 more for the kept one. With
        ``n_init=1``, or ``restart_epochs >= epochs``, every restart trains ``epochs``
        epochs.
    batch_size : int, default=250
    lr : float, default=2e-3
        Adam learning rate.
    n_init : int, default=4
        Independent trainings from different initialisations; the one with the lowest
        unsupervised objective ``H(Y|X) - mu H(Y)`` at their end is kept.
        Labels are never used.
    dtype : {"float32", "float64"}, default="float32"
    random_state : None, int or numpy.random.Generator
        Seeds initialisation, shuffling and VAT probes: a fixed int gives bit-for-bit
        identical fits.
    verbose : int, default=0
        1 prints one progress line per epoch.
    checkpoint : str, os.PathLike or None, default=None
        If given, the whole training state is written (atomically) to this ``.npz``
        file after every epoch, and a ``fit`` that finds a checkpoint written for the
        same class, parameters and data resumes from it: an interrupted fit, run
        again, ends with exactly the weights and labels of an uninterrupted one.
        A checkpoint from other data or settings is an error, never silently used.

    Attributes
    ----------
    network_ : npclust.nn.Sequential
        The trained MLP producing logits.
    labels_ : ndarray of shape (n_samples,)
    vat_radius_ : ndarray of shape (n_samples,) or None
        The per-sample VAT radius used in training.
    objective_ : float
        H(Y|X) - mu H(Y) of the final model on the training data (evaluation mode).
    n_iter_ : int
        Epochs run by the kept model, its restart's and those it was trained on.
    history_ : list of dict
        Per epoch: loss terms, and ACC/NMI/ARI when ``y`` was given to ``fit``; the kept
        restart's entries, then those of its training on.
    restart_histories_ : list of list of dict
        The history of every restart, in order, up to the choice of the kept one.
    stop_reason_ : str
        Why the kept run's training ended (all epochs done, ``tol`` reached, ...).

    ``transform`` returns the logits, of shape (n_samples, n_clusters).
    """

    _fitted_modules = ("network_",)
    _fitted_arrays = ("labels_", "vat_radius_")
    _fitted_scalars = ("n_features_in_", "n_iter_", "objective_")

    def __init__(self, n_clusters=10, hidden_dims=(1200, 1200), mu=4.0, lam=0.1, vat=True,
                 xi=10.0, eps_scale=0.25, n_neighbors=10, epochs=50, restart_epochs=15, batch_size=250,
                 lr=2e-3, n_init=4, dtype="float32", random_state=None, verbose=0,
                 checkpoint=None):
        self.n_clusters = n_clusters
        self.hidden_dims = hidden_dims
        self.mu = mu
        self.lam = lam
        self.vat = vat
        self.xi = xi
        self.eps_scale = eps_scale
        self.n_neighbors = n_neighbors
        self.epochs = epochs
        self.restart_epochs = restart_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.n_init = n_init
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint = checkpoint

    def _validate_params(self, X):
        n_samples = X.shape[0]
        check_integer(self.n_clusters, "n_clusters", 1, n_samples)
        check_layer_widths(self.hidden_dims, "hidden_dims")
        check_positive(self.mu, "mu", allow_zero=True)
        check_positive(self.lam, "lam")
        check_positive(self.xi, "xi")
        check_positive(self.eps_scale, "eps_scale")
        if self.vat:
            check_integer(self.n_neighbors, "n_neighbors", 1, n_samples - 1)
        check_integer(self.epochs, "epochs", 1)
        check_integer(self.restart_epochs, "restart_epochs", 1)
        check_integer(self.batch_size, "batch_size", 2)
        check_positive(self.lr, "lr")
        check_integer(self.n_init, "n_init", 1)

    # ---------------------------------------------------------------- training
    def _fit(self, X, y, rng):
        largest = largest_magnitude(X)
        if largest * largest * X.shape[1] * self.batch_size > np.finfo(X.dtype).max:
            # Batch normalisation sums squares over a batch: they would overflow, its
            # variance would be inf and every sample would look the same to the network.
            raise ValueError(
                f"X has values up to {largest:.3g}: their squares summed over a batch overflow "
                f"{X.dtype.name}, in which the network computes; standardise the data"
                + (" or set dtype='float64'" if X.dtype == np.float32 else ""))
        fit_restarts(self, X, y, rng)

    def _build_model(self, n_features, rng):
        dtype = self._dtype()
        layers, width = [], n_features
        for hidden in self.hidden_dims:
            layers += [nn.Linear(width, hidden, rng=rng, dtype=dtype),
                       nn.BatchNorm1d(hidden, dtype=dtype), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, self.n_clusters, rng=rng, dtype=dtype))
        return {"network": nn.Sequential(*layers).flatten_parameters()}

    def _expected_shapes(self, n_features, n_samples):
        shapes = linear_stack_shapes("module/network_/",
                                     [n_features, *self.hidden_dims, self.n_clusters], batch_norm=True)
        shapes["array/labels_"] = (n_samples,)
        if self.vat:
            shapes["array/vat_radius_"] = (n_samples,)
        return shapes

    def _fit_arrays(self, X, saved):
        """Each sample's VAT radius, also kept as ``vat_radius_`` (None without VAT).

        ``saved`` holds a checkpoint's copy, written for this data and these parameters:
        reusing it saves the neighbour search, the costliest one-off step, on resume.
        """
        self.vat_radius_ = None
        if self.vat and self.n_clusters > 1:
            self.vat_radius_ = saved.get("vat_radius")
            if self.vat_radius_ is None or self.vat_radius_.shape != (X.shape[0],):
                self.vat_radius_ = self._vat_radius(X)
        return {} if self.vat_radius_ is None else {"vat_radius": self.vat_radius_}

    def _vat_radius(self, X):
        # A one-off O(n^2 d) cost before the first epoch, so it says what it is doing.
        start = time.perf_counter()
        radius = self.eps_scale * kth_neighbor_distance(X, self.n_neighbors)
        report(self.verbose, f"VAT radii: k-th neighbour distances (k = {self.n_neighbors}) "
                             f"of {X.shape[0]} samples in {time.perf_counter() - start:.1f}s")
        return radius

    def _stages(self, n_samples):
        if self.n_clusters == 1:
            return []  # every sample in the one cluster: nothing to train
        def stage(name, epochs, kept_only=False):
            return Stage(name, epochs, self._train_epoch, batch_size=self.batch_size,
                         optimizer=lambda model: Adam(model["network"].parameters(), lr=self.lr),
                         steps_per_unit=len(batch_boundaries(n_samples, self.batch_size)) - 1,
                         kept_only=kept_only)

        restart_epochs = self.epochs if self.n_init == 1 else min(self.restart_epochs, self.epochs)
        stages = [stage("train", restart_epochs)]
        if restart_epochs < self.epochs:
            stages.append(stage("train on", self.epochs - restart_epochs, kept_only=True))
        return stages

    def _train_epoch(self, run):
        """One pass over the data; returns the mean loss terms over its batches."""
        network = run.model["network"]
        network.train()
        totals = np.zeros(3)
        batches = run.batches.epoch()
        for batch in batches:
            radius = run.fit_arrays["vat_radius"][batch] if self.vat else None
            totals += self._step(network, run.optimizer, run.X[batch], radius, run.rng)
        totals /= len(batches)
        labels = evaluate(network, run.X).argmax(axis=1) if run.y is not None else None
        values = dict(zip(("loss", "conditional_minus_mu_marginal", "vat"), totals))
        return values, labels, False

    def _step(self, network, optimizer, x, radius, rng):
        """One Adam step on a mini-batch; returns (loss, information term, VAT term)."""
        network.zero_grad()
        logits = network(x)
        information, dlogits = mutual_information(logits, mu=self.mu)
        network.backward(self.lam * dlogits, input_grad=False)
        vat_loss = 0.0
        if self.vat:
            vat_loss = self._vat_backward(network, x, logits, radius, rng)
        optimizer.step()
        return vat_loss + self.lam * information, information, vat_loss

    def _vat_backward(self, network, x, logits, radius, rng):
        """Accumulate the gradient of R_VAT = KL(p(x) || p(x + r_adv)) into the network.

        p(x) is a constant target (no gradient flows into the clean prediction). The
        adversarial direction comes from one power iteration: the gradient of the KL
        at x + xi * d for a random unit d, taken w.r.t. the input only.
        """
        target = softmax(logits)
        # Drawn in the network's dtype: a float64 draw cast to float32 makes twice the
        # random bits and one more pass, a visible share of a float32 step.
        probe = rng.standard_normal(x.shape, dtype=x.dtype)
        probe *= self.xi / np.linalg.norm(probe, axis=1, keepdims=True)
        _track_running_stats(network, False)
        network.requires_grad_(False)
        try:
            log_q = log_softmax(network(x + probe))
            _, dlog_q = kl_div(log_q, target)
            direction = network.backward(log_softmax_backward(dlog_q, log_q))
        finally:
            network.requires_grad_(True)
        norms = np.linalg.norm(direction, axis=1, keepdims=True)
        # A zero gradient (a sample whose prediction cannot move) gets no perturbation.
        np.divide(direction, norms, out=direction, where=norms > 0)
        direction[(norms == 0).ravel()] = 0
        try:
            log_q = log_softmax(network(x + radius[:, None].astype(x.dtype) * direction))
        finally:
            _track_running_stats(network, True)
        vat_loss, dlog_q = kl_div(log_q, target)
        network.backward(log_softmax_backward(dlog_q, log_q), input_grad=False)
        return vat_loss

    def _objective(self, model, X):
        logits = evaluate(model["network"], X)
        value, _ = mutual_information(logits, mu=self.mu)
        return value, logits.argmax(axis=1)

    def _score_objective(self, X):
        value, _ = mutual_information(in_chunks(self._logits, X), mu=self.mu)
        return value

    def _set_fitted(self, model, X, history, evaluation=None):
        self.network_ = model["network"]
        self.objective_, self.labels_ = evaluation or self._objective(model, X)
        self.history_, self.n_iter_ = history, len(history)
        self.n_features_in_ = X.shape[1]

    # --------------------------------------------------------------- inference
    def _logits(self, X_chunk):
        self.network_.eval()
        return self.network_(X_chunk)

    def _soft_assignment(self, X_chunk):
        return softmax(self._logits(X_chunk))

    def _embed(self, X_chunk):
        return self._logits(X_chunk)


def _track_running_stats(network, track):
    """Perturbed copies of a batch must not move BatchNorm's running statistics.

    Otherwise evaluation mode would normalise with statistics of inputs pushed
    ``xi`` away from the data, and predictions at test time would drift from
    those seen in training.
    """
    for module in network.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.track_running_stats = track
