"""IMSAT: Information Maximizing Self-Augmented Training (Hu et al., ICML 2017)."""

import time

import numpy as np

from .. import nn
from ..functional import log_softmax, log_softmax_backward, softmax
from ..losses import kl_div, mutual_information
from ..optim import Adam
from ..validation import check_integer, check_layer_widths, check_positive
from .base import (ClusteringEstimator, TrainingLog, check_finite_loss, evaluate, minibatches,
                   report_choice)
from .checkpoint import open_checkpoint, prefixed, unprefixed

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
    hidden_dims : tuple of int, default=(1200, 1200)
    mu : float, default=4.0
        Weight of the marginal entropy H(Y) (cluster balance).
    lam : float, default=0.1
        Weight of the information term relative to R_VAT.
    vat : bool, default=True
        Use the VAT penalty (else the loss is the information term alone).
    xi : float, default=10.0
        Length of the random probe in the power iteration.
    eps_scale : float, default=0.75
        VAT radius as a fraction of each sample's distance to its ``n_neighbors``-th
        nearest neighbour. Hu et al. use 0.25 on MNIST; on the 8x8 digits 0.75 was
        measured better (see ``docs/methods.md``).
    n_neighbors : int, default=10
    epochs : int, default=15
        Epochs per restart.
    batch_size : int, default=250
    lr : float, default=2e-3
        Adam learning rate.
    n_init : int, default=4
        Independent trainings from different initialisations; the one with the lowest
        final unsupervised objective ``H(Y|X) - mu H(Y)`` (``objective_``) is kept.
        Labels are never used. On the digits this objective ranks runs in the same
        order as their accuracy, so a few short restarts beat one long run.
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
        H(Y|X) - mu H(Y) of the kept model on the training data (evaluation mode).
    n_iter_ : int
        Epochs run by the kept model.
    history_ : list of dict
        Per epoch: loss terms, and ACC/NMI/ARI when ``y`` was given to ``fit``.

    ``transform`` returns the logits, of shape (n_samples, n_clusters).
    """

    _fitted_modules = ("network_",)
    _fitted_arrays = ("labels_", "vat_radius_")
    _fitted_scalars = ("n_features_in_", "n_iter_", "objective_")

    def __init__(self, n_clusters=10, hidden_dims=(1200, 1200), mu=4.0, lam=0.1, vat=True,
                 xi=10.0, eps_scale=0.75, n_neighbors=10, epochs=15, batch_size=250, lr=2e-3,
                 n_init=4, dtype="float32", random_state=None, verbose=0, checkpoint=None):
        self.n_clusters = n_clusters
        self.hidden_dims = hidden_dims
        self.mu = mu
        self.lam = lam
        self.vat = vat
        self.xi = xi
        self.eps_scale = eps_scale
        self.n_neighbors = n_neighbors
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.n_init = n_init
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint = checkpoint

    def _validate_params(self, X):
        n_samples = X.shape[0]
        check_integer(self.n_clusters, "n_clusters", 2, n_samples)
        check_layer_widths(self.hidden_dims, "hidden_dims")
        check_positive(self.mu, "mu", allow_zero=True)
        check_positive(self.lam, "lam")
        check_positive(self.xi, "xi")
        check_positive(self.eps_scale, "eps_scale")
        if self.vat:
            check_integer(self.n_neighbors, "n_neighbors", 1, n_samples - 1)
        check_integer(self.epochs, "epochs", 1)
        check_integer(self.batch_size, "batch_size", 2)
        check_positive(self.lr, "lr")
        check_integer(self.n_init, "n_init", 1)

    # ---------------------------------------------------------------- network
    def _build_network(self, n_features, rng):
        dtype = self._dtype()
        layers, width = [], n_features
        for hidden in self.hidden_dims:
            layers += [nn.Linear(width, hidden, rng=rng, dtype=dtype),
                       nn.BatchNorm1d(hidden, dtype=dtype), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, self.n_clusters, rng=rng, dtype=dtype))
        return nn.Sequential(*layers).flatten_parameters()

    def _fit(self, X, y, rng):
        checkpoint = open_checkpoint(self, X)
        resumed = checkpoint.load() if checkpoint else None
        progress, arrays = resumed or ({"restart": 0, "epoch": 0, "best": None}, {})
        self.vat_radius_ = self._vat_radius(X, arrays.get("vat_radius"))
        best = progress["best"]
        best_state = unprefixed("best", arrays)
        for restart in range(progress["restart"], self.n_init):
            network = self._build_network(X.shape[1], rng)
            optimizer = Adam(network.parameters(), lr=self.lr)
            log = TrainingLog(self.epochs, self.verbose, y, stage=(
                f"restart {restart + 1}/{self.n_init}" if self.n_init > 1 else "train"))
            first_epoch = 1
            if resumed and restart == progress["restart"]:
                network.load_state_dict(unprefixed("network", arrays))
                optimizer.load_state_dict(unprefixed("optimizer", arrays))
                rng.bit_generator.state = progress["rng_state"]
                log.records = progress["history"]
                first_epoch = progress["epoch"] + 1
            for epoch in range(first_epoch, self.epochs + 1):
                self._train_epoch(X, y, rng, network, optimizer, log, epoch)
                if checkpoint:
                    checkpoint.save(
                        {"restart": restart, "epoch": epoch, "history": log.records,
                         "best": best},
                        rng, {**prefixed("network", network.state_dict()),
                              **prefixed("optimizer", optimizer.state_dict()),
                              **prefixed("best", best_state),
                              **({"vat_radius": self.vat_radius_} if self.vat else {})})
            objective = self._objective(network, X)
            if best is None or objective < best["objective"]:
                best = {"objective": objective, "history": log.records, "restart": restart}
                best_state = network.state_dict()
            # Free this restart's network, gradients and Adam moments before the next
            # one is built, rather than holding both at once.
            del network, optimizer
        if self.n_init > 1:
            report_choice(self.verbose, f"kept restart {best['restart'] + 1}/{self.n_init}: "
                          f"lowest objective H(Y|X) - mu H(Y) = {best['objective']:.4f}")
        self.network_ = self._build_network(X.shape[1], rng=0)
        self.network_.load_state_dict(best_state)
        self.objective_, self.history_, self.n_iter_ = best["objective"], best["history"], self.epochs
        self.labels_ = evaluate(self.network_, X).argmax(axis=1)

    def _vat_radius(self, X, saved=None):
        """Each sample's VAT radius, or None without VAT; `saved` is a checkpoint's copy."""
        if not self.vat:
            return None
        if saved is not None and saved.shape == (X.shape[0],):
            # The checkpoint was written for this data and these parameters; reusing
            # its radii saves the search (half a minute at 70,000 x 784) on resume.
            return saved
        from ..neighbors import kth_neighbor_distance

        # A one-off O(n^2 d) cost before the first epoch, so it says what it is doing.
        start = time.perf_counter()
        radius = self.eps_scale * kth_neighbor_distance(X, self.n_neighbors)
        report_choice(self.verbose, f"VAT radii: k-th neighbour distances (k = "
                      f"{self.n_neighbors}) of {X.shape[0]} samples in "
                      f"{time.perf_counter() - start:.1f}s")
        return radius

    def _train_epoch(self, X, y, rng, network, optimizer, log, epoch):
        """One pass over the data; on a non-finite loss, keep the last epoch's weights and stop."""
        last_good = network.state_dict()
        network.train()
        totals = np.zeros(3)
        for batch in minibatches(X.shape[0], self.batch_size, rng):
            totals += self._step(network, optimizer, X[batch], batch, rng)
        totals /= np.ceil(X.shape[0] / self.batch_size)
        for value, name in zip(totals, ("loss", "mutual information", "VAT")):
            check_finite_loss(value, f"IMSAT {name}", lambda: self._keep_last_good(
                network, last_good, X, log))
        labels = evaluate(network, X).argmax(axis=1) if y is not None else None
        log.record(epoch, labels=labels, loss=totals[0], conditional_minus_mu_marginal=totals[1],
                   vat=totals[2])

    def _keep_last_good(self, network, last_good, X, log):
        """Before a divergence error: restore the weights of the last finite epoch and
        leave the estimator usable with them (``labels_`` from those weights)."""
        network.load_state_dict(last_good)
        self.network_, self.history_, self.n_iter_ = network, log.records, len(log.records)
        self.objective_ = self._objective(network, X)
        self.labels_ = evaluate(network, X).argmax(axis=1)
        self.n_features_in_ = X.shape[1]

    def _step(self, network, optimizer, x, batch, rng):
        """One Adam step on a mini-batch; returns (loss, information term, VAT term)."""
        network.zero_grad()
        logits = network(x)
        information, dlogits = mutual_information(logits, mu=self.mu)
        network.backward(self.lam * dlogits, input_grad=False)
        vat_loss = 0.0
        if self.vat:
            vat_loss = self._vat_backward(network, x, logits, self.vat_radius_[batch], rng)
        optimizer.step()
        return vat_loss + self.lam * information, information, vat_loss

    def _vat_backward(self, network, x, logits, radius, rng):
        """Accumulate the gradient of R_VAT = KL(p(x) || p(x + r_adv)) into the network.

        p(x) is a constant target (no gradient flows into the clean prediction). The
        adversarial direction comes from one power iteration: the gradient of the KL
        at x + xi * d for a random unit d, taken w.r.t. the input only.
        """
        target = softmax(logits)
        probe = rng.standard_normal(x.shape).astype(x.dtype)
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

    # --------------------------------------------------------------- inference
    def _objective(self, network, X):
        value, _ = mutual_information(evaluate(network, X), mu=self.mu)
        return value

    def _untrained_modules(self, n_features):
        return {"network_": self._build_network(n_features, rng=0)}

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
