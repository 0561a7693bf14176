"""DEC (Xie et al., ICML 2016) and IDEC (Guo et al., IJCAI 2017): clustering in an autoencoder's latent space."""

import numpy as np

from .. import nn
from ..losses import dec_loss, mse, student_t_assignment, target_distribution
from ..optim import Adam
from ..validation import check_integer, check_layer_widths, check_positive
from .base import (ClusteringEstimator, TrainingLog, check_finite_loss, evaluate, minibatches,
                   report_choice)
from .checkpoint import BatchStream, open_checkpoint, prefixed, unprefixed
from .kmeans import kmeans

__all__ = ["DEC", "IDEC"]

class DEC(ClusteringEstimator):
    """Deep Embedded Clustering: an autoencoder's encoder refined by KL(P || Q) self-training.

    Training has three stages.

    1. **Pretraining.** A fully connected autoencoder (ReLU hidden layers, linear
       latent and output layers) is trained with Adam to minimise the mean squared
       reconstruction error ``mse(decoder(encoder(x)), x)``.
    2. **Initialisation.** k-means (k-means++ seeding, ``kmeans_n_init`` restarts, the
       lowest inertia kept) on the latent codes ``z = encoder(x)`` gives the centers
       ``mu_j``.
    3. **Self-training.** The decoder is dropped and the encoder and the centers are
       trained together, with Adam on mini-batches, to minimise

           L = KL(P || Q) = (1/n) sum_i sum_j p_ij log(p_ij / q_ij),

       where ``q_ij`` is proportional to ``(1 + ||z_i - mu_j||^2 / alpha) ** (-(alpha + 1) / 2)``
       (Student-t soft assignment, rows summing to 1) and the target
       ``p_ij = (q_ij^2 / f_j) / sum_l (q_il^2 / f_l)`` with ``f_j = sum_i q_ij``.
       P is computed from the soft assignments of the *whole* data set every
       ``update_interval`` iterations and held fixed in between; training stops when
       fewer than a fraction ``tol`` of the labels changed between two target updates,
       or after ``max_iter`` iterations.

    The whole procedure is repeated ``n_init`` times and the run with the lowest final
    value of the method's own objective (``objective_``, see Notes) is kept; labels
    are never used.

    Parameters
    ----------
    n_clusters : int, default=10
    hidden_dims : tuple of int, default=(500, 500, 2000)
        Widths of the encoder's hidden layers; the decoder mirrors them.
    latent_dim : int, default=10
        Width of the linear latent layer (the embedding ``transform`` returns).
    alpha : float, default=1.0
        Degrees of freedom of the Student-t kernel.
    pretrain_epochs : int, default=...
    pretrain_batch_size : int, default=...
    pretrain_lr : float, default=...
        Adam learning rate of the autoencoder pretraining.
    weight_decay : float, default=...
        L2 penalty on the network weights during pretraining (Adam's ``weight_decay``).
    max_iter : int, default=...
        Maximum number of self-training iterations (mini-batch steps).
    update_interval : int, default=...
        Iterations between two updates of the target distribution P.
    batch_size : int, default=256
        Mini-batch size of the self-training.
    lr : float, default=...
        Adam learning rate of the self-training (encoder and centers).
    tol : float in [0, 1], default=1e-3
        Stop when the fraction of samples whose label changed between two target
        updates falls below ``tol`` (0 disables the rule).
    n_init : int, default=...
        Independent runs (pretraining included); the one with the lowest
        ``objective_`` is kept.
    kmeans_n_init : int, default=20
        k-means restarts in latent space when initialising the centers.
    dtype : {"float32", "float64"}, default="float32"
    random_state : None, int or numpy.random.Generator
        Seeds initialisation, shuffling and k-means: a fixed int gives bit-for-bit
        identical fits.
    verbose : int, default=0
        1 prints one progress line per pretraining epoch and per target update.
    checkpoint : str, os.PathLike or None, default=None
        If given, the whole training state is written (atomically) to this ``.npz``
        file after every pretraining epoch and every target update; a ``fit`` that
        finds a checkpoint of the same class, parameters and data resumes from it and
        ends exactly as an uninterrupted fit would. Other data or settings: an error.

    Attributes
    ----------
    encoder_ : npclust.nn.Sequential
        Maps samples to the latent space.
    decoder_ : npclust.nn.Sequential
        Maps latent codes back to input space. DEC leaves it as pretrained.
    cluster_centers_ : ndarray of shape (n_clusters, latent_dim)
        Centers in latent space.
    labels_ : ndarray of shape (n_samples,)
    objective_ : float
        The kept run's final objective on the training data (see Notes).
    n_iter_ : int
        Self-training iterations run by the kept run.
    history_ : list of dict
        One entry per pretraining epoch (``stage="pretrain"``, reconstruction loss)
        and per target update (``stage="cluster"``: mean loss terms since the last
        update and ``delta_label``), plus ACC/NMI/ARI when ``y`` was given to ``fit``
        (monitoring only).

    ``transform`` returns the latent codes, of shape (n_samples, latent_dim);
    ``predict_proba`` the Student-t soft assignments Q.

    Notes
    -----
    ...
    """

    _fitted_modules = ("encoder_", "decoder_")
    _fitted_arrays = ("labels_", "cluster_centers_")
    _fitted_scalars = ("n_features_in_", "n_iter_", "objective_")

    def __init__(self, n_clusters=10, hidden_dims=(500, 500, 2000), latent_dim=10, alpha=1.0,
                 pretrain_epochs=30, pretrain_batch_size=64, pretrain_lr=1e-3, weight_decay=0.0,
                 corruption=0.2, max_iter=1500, update_interval=50, batch_size=256, lr=1e-3,
                 tol=1e-3, n_init=1, kmeans_n_init=20, dtype="float32", random_state=None,
                 verbose=0, checkpoint=None):
        self.n_clusters = n_clusters
        self.hidden_dims = hidden_dims
        self.latent_dim = latent_dim
        self.alpha = alpha
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_batch_size = pretrain_batch_size
        self.pretrain_lr = pretrain_lr
        self.weight_decay = weight_decay
        self.corruption = corruption
        self.max_iter = max_iter
        self.update_interval = update_interval
        self.batch_size = batch_size
        self.lr = lr
        self.tol = tol
        self.n_init = n_init
        self.kmeans_n_init = kmeans_n_init
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint = checkpoint

    # What distinguishes IDEC: it keeps training the decoder during self-training.
    _keeps_decoder = False

    def _clustering_weight(self):
        """Weight of KL(P || Q) in the self-training loss."""
        return 1.0

    # ------------------------------------------------------------- validation
    def _validate_params(self, X):
        n_samples = X.shape[0]
        check_integer(self.n_clusters, "n_clusters", 2, n_samples)
        check_layer_widths(self.hidden_dims, "hidden_dims")
        check_integer(self.latent_dim, "latent_dim", 1)
        check_positive(self.alpha, "alpha")
        check_integer(self.pretrain_epochs, "pretrain_epochs", 1)
        check_integer(self.pretrain_batch_size, "pretrain_batch_size", 2)
        check_positive(self.pretrain_lr, "pretrain_lr")
        check_positive(self.weight_decay, "weight_decay", allow_zero=True)
        if not 0 <= self.corruption < 1:
            raise ValueError(f"corruption must be in [0, 1), got {self.corruption!r}")
        check_integer(self.max_iter, "max_iter", 1)
        check_integer(self.update_interval, "update_interval", 1)
        check_integer(self.batch_size, "batch_size", 2)
        check_positive(self.lr, "lr")
        check_positive(self.tol, "tol", allow_zero=True)
        if self.tol > 1:
            raise ValueError(
                f"tol is a fraction of labels and must be in [0, 1], got {self.tol}"
            )
        check_integer(self.n_init, "n_init", 1)
        check_integer(self.kmeans_n_init, "kmeans_n_init", 1)

    # ---------------------------------------------------------------- networks
    def _build_networks(self, n_features, rng):
        """The untrained encoder and decoder, as ``(encoder, decoder)``.

        Encoder: ``n_features -> hidden_dims... -> latent_dim``, ReLU after every
        hidden layer, linear latent layer. Decoder: the mirror image, with a linear
        output layer. The parameters of both live in one flat buffer (encoder first),
        so an optimizer updates them with whole-buffer operations.
        """
        dtype = self._dtype()
        widths = [n_features, *self.hidden_dims, self.latent_dim]

        def stack(widths):
            layers = []
            for width_in, width_out in zip(widths[:-1], widths[1:]):
                layers += [nn.Linear(width_in, width_out, rng=rng, dtype=dtype),
                           nn.ReLU(inplace=True)]
            return nn.Sequential(*layers[:-1])  # no activation after the last layer

        encoder, decoder = stack(widths), stack(widths[::-1])
        nn.Sequential(encoder, decoder).flatten_parameters()
        return encoder, decoder

    # ----------------------------------------------------------------- fitting
    def _fit(self, X, y, rng):
        state = _Resumable(self, X, rng)
        for restart in range(state.progress["restart"], self.n_init):
            run = self._fit_once(X, y, rng, restart, state)
            if state.best is None or run["objective"] < state.best["objective"]:
                state.best = {key: run[key] for key in ("objective", "n_iter", "history")}
                state.best["restart"] = restart
                state.best_arrays = {**prefixed("encoder", run["encoder"].state_dict()),
                                     **prefixed("decoder", run["decoder"].state_dict()),
                                     "centers": run["centers"].data.copy()}
            # Free this restart's networks and optimizer before the next one is built.
            del run
        if self.n_init > 1:
            report_choice(self.verbose, f"kept restart {state.best['restart'] + 1}/{self.n_init}: "
                          f"lowest KL(P || Q) = {state.best['objective']:.4f}")
        self._set_fitted(X, *self._build_networks(X.shape[1], rng=0), state.best_arrays,
                         state.best["history"], state.best["n_iter"])
        self.objective_ = state.best["objective"]

    def _set_fitted(self, X, encoder, decoder, arrays, history, n_iter):
        """Fitted attributes from stored weights (``arrays`` as saved by ``state_dict``)."""
        encoder.load_state_dict(unprefixed("encoder", arrays))
        decoder.load_state_dict(unprefixed("decoder", arrays))
        self.encoder_, self.decoder_, self.history_, self.n_iter_ = encoder, decoder, history, n_iter
        if "centers" in arrays:
            self.cluster_centers_ = np.array(arrays["centers"])
            self.labels_ = student_t_assignment(
                evaluate(encoder, X), self.cluster_centers_, self.alpha).argmax(axis=1)
            self.n_features_in_ = X.shape[1]
        else:
            # Stopped before clustering: whatever a previous fit left must not pass as
            # the result of this one.
            for attribute in ("cluster_centers_", "labels_", "n_features_in_", "objective_"):
                self.__dict__.pop(attribute, None)

    def _fit_once(self, X, y, rng, restart, state):
        prefix = f"restart {restart + 1}/{self.n_init} " if self.n_init > 1 else ""
        encoder, decoder = self._build_networks(X.shape[1], rng)
        saved = state.take(restart, "cluster")
        if saved is None:
            pretrain_history = self._pretrain(
                X, y, encoder, decoder, rng, prefix,
                lambda done: state.save(restart, "pretrain", done), state.take(restart, "pretrain"))
            centers, initial_labels = self._initial_centers(evaluate(encoder, X), rng)
            init_log = TrainingLog(1, self.verbose, y, stage=prefix + "kmeans init")
            init_log.record(1, labels=initial_labels)
            history = pretrain_history + init_log.records
        else:
            progress, arrays = saved
            encoder.load_state_dict(unprefixed("encoder", arrays))
            decoder.load_state_dict(unprefixed("decoder", arrays))
            centers = nn.Parameter(np.array(arrays["centers"]))
            history = progress["history"][:progress["cluster_history_start"]]
        def save_cluster_stage(done):
            state.save(restart, "cluster", lambda: {
                **done(), "history": history + done()["history"],
                "cluster_history_start": len(history)})

        n_iter, cluster_history = self._self_train(
            X, y, encoder, decoder, centers, rng, prefix, saved, save_cluster_stage)
        objective = self._objective(X, encoder, decoder, centers)
        return dict(encoder=encoder, decoder=decoder, centers=centers, objective=objective,
                    n_iter=n_iter, history=history + cluster_history)

    def _pretrain(self, X, y, encoder, decoder, rng, prefix, save, saved):
        """Train the autoencoder on the reconstruction error; returns the history.

        ``save(done)`` is called after every epoch with a function returning the state
        to checkpoint (called only when checkpointing);
        ``saved`` is such a state to resume from, or None.
        """
        parameters = encoder.parameters() + decoder.parameters()
        optimizer = Adam(parameters, lr=self.pretrain_lr, weight_decay=self.weight_decay)
        log = TrainingLog(self.pretrain_epochs, self.verbose, stage=prefix + "pretrain")
        first_epoch = 1
        if saved is not None:
            progress, arrays = saved
            encoder.load_state_dict(unprefixed("encoder", arrays))
            decoder.load_state_dict(unprefixed("decoder", arrays))
            optimizer.load_state_dict(unprefixed("optimizer", arrays))
            log.records, first_epoch = progress["history"], progress["epoch"] + 1
        for epoch in range(first_epoch, self.pretrain_epochs + 1):
            last_good = _snapshot(parameters)
            total, n_batches = 0.0, 0
            for batch in minibatches(X.shape[0], self.pretrain_batch_size, rng):
                optimizer.zero_grad()
                x = X[batch]
                reconstruction, dz = _reconstruction_backward(
                    decoder, encoder(self._corrupt(x, rng)), x)
                encoder.backward(dz, input_grad=False)
                optimizer.step()
                total += reconstruction
                n_batches += 1
            check_finite_loss(total, f"{type(self).__name__} pretraining reconstruction loss",
                              lambda: self._keep_last_good(X, encoder, decoder, parameters,
                                                           last_good, None, log.records))
            log.record(epoch, reconstruction=total / n_batches)
            save(lambda: {"epoch": epoch, "history": log.records, "arrays": {
                **prefixed("encoder", encoder.state_dict()),
                **prefixed("decoder", decoder.state_dict()),
                **prefixed("optimizer", optimizer.state_dict())}})
        return log.records

    def _keep_last_good(self, X, encoder, decoder, parameters, last_good, centers, history):
        """Before a divergence error: restore the last good weights and keep them fitted."""
        _restore(parameters, last_good)
        arrays = {**prefixed("encoder", encoder.state_dict()),
                  **prefixed("decoder", decoder.state_dict())}
        if centers is not None:
            arrays["centers"] = centers.data
        self._set_fitted(X, encoder, decoder, arrays, history, 0)

    def _corrupt(self, x, rng):
        """Denoising input: each entry zeroed with probability ``corruption``.

        Xie et al. pretrain DEC's autoencoder as a denoising one (20% dropout on the
        input); the survivors are scaled by ``1 / (1 - corruption)`` as in dropout, so
        the encoder sees inputs of the same expected magnitude at inference time.
        """
        if self.corruption == 0:
            return x
        keep = rng.random(x.shape) >= self.corruption
        return x * keep / x.dtype.type(1.0 - self.corruption)

    def _initial_centers(self, z, rng):
        """k-means on the latent codes, best inertia of ``kmeans_n_init`` runs: (centers, labels)."""
        centers, labels, _, _ = kmeans(z.astype(np.float64), self.n_clusters, self.kmeans_n_init,
                                       random_state=rng)
        return nn.Parameter(centers.astype(z.dtype)), labels

    def _self_train(self, X, y, encoder, decoder, centers, rng, prefix, saved, save):
        """Minimise (reconstruction +) weight * KL(P || Q); returns (iterations, history).

        ``save(done)`` is called after every target update with a function returning
        the state to checkpoint; ``saved`` is such a state to resume from, or None.
        """
        parameters = encoder.parameters() + [centers]
        if self._keeps_decoder:
            parameters += decoder.parameters()
        optimizer = Adam(parameters, lr=self.lr)
        weight = self._clustering_weight()
        n_updates = -(-self.max_iter // self.update_interval)
        log = TrainingLog(n_updates, self.verbose, y, stage=prefix + "cluster")
        batches = BatchStream(X.shape[0], self.batch_size, rng)
        previous_labels, totals, n_iter, target = None, np.zeros(2), 0, None
        if saved is not None:
            progress, arrays = saved
            optimizer.load_state_dict(unprefixed("optimizer", arrays))
            batches.restore(unprefixed("batches", arrays))
            log.records = progress["history"][progress["cluster_history_start"]:]
            n_iter, previous_labels, target = (
                progress["n_iter"], arrays["previous_labels"], arrays["target"])
        last_good = _snapshot(parameters)
        # A resumed run continues right after the target update it was saved at.
        resuming = saved is not None
        while True:
            if not resuming and (n_iter % self.update_interval == 0 or n_iter == self.max_iter):
                # The target comes from the soft assignments of the whole data set.
                soft_assignment = student_t_assignment(
                    evaluate(encoder, X), centers.data, self.alpha)
                labels = soft_assignment.argmax(axis=1)
                if previous_labels is not None:
                    steps = n_iter - (log.records[-1]["iteration"] if log.records else 0)
                    totals /= steps
                    check_finite_loss(
                        totals.sum(), f"{type(self).__name__} self-training loss",
                        lambda: self._keep_last_good(X, encoder, decoder, parameters, last_good,
                                                     centers, log.records))
                    last_good = _snapshot(parameters)
                    delta_label = float(np.mean(labels != previous_labels))
                    self._record(log, n_iter, labels, totals, delta_label)
                    totals = np.zeros(2)
                    if delta_label < self.tol or n_iter == self.max_iter:
                        break
                previous_labels = labels
                target = target_distribution(soft_assignment)
                save(lambda: {"n_iter": n_iter, "history": log.records, "arrays": {
                    **prefixed("encoder", encoder.state_dict()),
                    **prefixed("decoder", decoder.state_dict()), "centers": centers.data,
                    **prefixed("optimizer", optimizer.state_dict()),
                    **prefixed("batches", batches.state()),
                    "previous_labels": previous_labels, "target": target}})
            resuming = False
            batch = batches.next()
            totals += self._self_training_step(
                encoder, decoder, centers, optimizer, X[batch], target[batch], weight)
            n_iter += 1
        return n_iter, log.records

    def _record(self, log, n_iter, labels, totals, delta_label):
        terms = {"kl": totals[0]}
        if self._keeps_decoder:
            terms["reconstruction"] = totals[1]
        terms["loss"] = totals[1] + self._clustering_weight() * totals[0]
        log.record(len(log.records) + 1, labels=labels, iteration=n_iter,
                   delta_label=delta_label, **terms)

    def _self_training_step(self, encoder, decoder, centers, optimizer, x, target, weight):
        """One Adam step; returns (KL, reconstruction) on the batch (reconstruction 0 for DEC)."""
        optimizer.zero_grad()
        z = encoder(x)
        kl, dz, dcenters = dec_loss(z, centers.data, target, self.alpha)
        dz *= weight
        centers.grad += weight * dcenters
        reconstruction = 0.0
        if self._keeps_decoder:
            reconstruction, dz_reconstruction = _reconstruction_backward(decoder, z, x)
            dz += dz_reconstruction
        encoder.backward(dz, input_grad=False)
        optimizer.step()
        return np.array([kl, reconstruction])

    def _objective(self, X, encoder, decoder, centers):
        """KL(P || Q) on the whole data set with P from the final Q."""
        z = evaluate(encoder, X)
        target = target_distribution(student_t_assignment(z, centers.data, self.alpha))
        # dec_loss works in log space, so assignments that underflow to 0 stay finite.
        objective, _, _ = dec_loss(z, centers.data, target, self.alpha)
        return objective

    # --------------------------------------------------------------- inference
    def _untrained_modules(self, n_features):
        encoder, decoder = self._build_networks(n_features, rng=0)
        return {"encoder_": encoder, "decoder_": decoder}

    def _embed(self, X_chunk):
        self.encoder_.eval()
        return self.encoder_(X_chunk)

    def _soft_assignment(self, X_chunk):
        return student_t_assignment(self._embed(X_chunk), self.cluster_centers_, self.alpha)


class IDEC(DEC):
    """Improved DEC: self-training keeps the decoder, loss = reconstruction + gamma * KL(P || Q).
    """

    _keeps_decoder = True

    def __init__(self, n_clusters=10, hidden_dims=(500, 500, 2000), latent_dim=10, alpha=1.0,
                 gamma=0.1, pretrain_epochs=30, pretrain_batch_size=64, pretrain_lr=1e-3,
                 weight_decay=0.0, corruption=0.2, max_iter=1500, update_interval=50,
                 batch_size=256, lr=1e-3, tol=1e-3, n_init=1, kmeans_n_init=20, dtype="float32",
                 random_state=None, verbose=0, checkpoint=None):
        super().__init__(
            n_clusters=n_clusters, hidden_dims=hidden_dims, latent_dim=latent_dim, alpha=alpha,
            pretrain_epochs=pretrain_epochs, pretrain_batch_size=pretrain_batch_size,
            pretrain_lr=pretrain_lr, weight_decay=weight_decay, corruption=corruption,
            max_iter=max_iter, update_interval=update_interval, batch_size=batch_size, lr=lr,
            tol=tol, n_init=n_init, kmeans_n_init=kmeans_n_init, dtype=dtype,
            random_state=random_state, verbose=verbose, checkpoint=checkpoint)
        self.gamma = gamma

    def _clustering_weight(self):
        return self.gamma

    def _validate_params(self, X):
        super()._validate_params(X)
        check_positive(self.gamma, "gamma")


# ------------------------------------------------------------------- helpers


def _snapshot(parameters):
    return [parameter.data.copy() for parameter in parameters]


def _restore(parameters, snapshot):
    for parameter, saved in zip(parameters, snapshot):
        parameter.data[...] = saved


def _reconstruction_backward(decoder, z, x):
    """Mean squared reconstruction error of ``decoder(z)`` against ``x``, backpropagated.

    Accumulates the decoder's parameter gradients and returns ``(loss, dloss/dz)``, for
    the caller to pass on to the encoder together with any other term.
    """
    loss, dreconstruction = mse(decoder(z), x)
    return loss, decoder.backward(dreconstruction)


class _Resumable:
    """Where a DEC/IDEC fit stands, read from and written to its checkpoint (if any).

    ``progress`` says which restart and stage a checkpoint stopped in; ``take``
    hands that stage its saved state once, restoring the random generator, and
    ``save`` writes the current stage's state together with the best completed
    restart so far.
    """

    def __init__(self, estimator, X, rng):
        self.checkpoint, self.rng = open_checkpoint(estimator, X), rng
        saved = self.checkpoint.load() if self.checkpoint else None
        self.progress, self.arrays = saved or ({"restart": 0, "stage": None, "best": None}, {})
        self.best = self.progress["best"]
        self.best_arrays = unprefixed("best", self.arrays)

    def take(self, restart, stage):
        """``(progress, arrays)`` saved in ``stage`` of ``restart``, or None; only once."""
        progress = self.progress
        if progress["stage"] != stage or progress["restart"] != restart:
            return None
        self.progress = dict(progress, stage=None)
        self.rng.bit_generator.state = progress["rng_state"]
        return progress, self.arrays

    def save(self, restart, stage, done):
        """Checkpoint ``done()`` (progress and ``"arrays"``) as the state of ``stage``."""
        if self.checkpoint is None:
            return
        done = done()
        progress = {key: value for key, value in done.items() if key != "arrays"}
        self.checkpoint.save(
            {**progress, "restart": restart, "stage": stage, "best": self.best}, self.rng,
            {**done["arrays"], **prefixed("best", self.best_arrays)})
