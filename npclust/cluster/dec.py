"""DEC (Xie et al., ICML 2016) and IDEC (Guo et al., IJCAI 2017): clustering in a latent space."""

import numpy as np

from .. import nn
from ..lloyd import kmeans
from ..losses import dec_loss, mse, student_t_assignment, target_distribution
from ..optim import Adam
from ..spectral import spectral_clustering
from ..validation import check_integer, check_layer_widths, check_option, check_positive
from .base import ClusteringEstimator, evaluate, in_chunks, linear_stack_shapes
from .training import Stage, batch_boundaries, fit_restarts

__all__ = ["DEC", "IDEC"]

class DEC(ClusteringEstimator):
    """Deep Embedded Clustering: an autoencoder's encoder refined by KL(P || Q) self-training.

    Training has three stages.

    1. **Pretraining.** A fully connected autoencoder (ReLU hidden layers, linear
       latent and output layers) is trained with Adam to minimise the mean squared
       reconstruction error ``mse(decoder(encoder(x)), x)``.
    2. **Initialisation.** k-means (k-means++ seeding, ``kmeans_n_init`` restarts, the
       lowest inertia kept) on the latent codes ``z = encoder(x)`` gives the centers
       ``mu_j``; with ``init="spectral"``, spectral clustering of the codes' 10-nearest-
       neighbour graph does, each center the mean code of its cluster, and with
       ``init="spectral_input"`` spectral clustering of the input features' graph.
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
        1 is the trivial clustering (every sample in one cluster), returned without
        training.
    hidden_dims : tuple of int, default=(500, 500, 2000)
        Widths of the encoder's hidden layers; the decoder mirrors them.
    latent_dim : int, default=10
        Width of the linear latent layer (the embedding ``transform`` returns).
    alpha : float, default=1.0
        Degrees of freedom of the Student-t kernel.
    pretrain_epochs : int, default=30
        Epochs of autoencoder pretraining.
    pretrain_batch_size : int, default=64
    pretrain_lr : float, default=1e-3
        Adam learning rate of the autoencoder pretraining.
    weight_decay : float, default=0.0
        L2 penalty on the network weights during pretraining (Adam's ``weight_decay``).
    corruption : float in [0, 1), default=0.2
        Pretraining is that of a denoising autoencoder: each input entry is zeroed
        with this probability (the survivors scaled by ``1 / (1 - corruption)``) and
        the clean input reconstructed. 0 trains a plain autoencoder.
    max_iter : int, default=1500
        Maximum number of self-training iterations (mini-batch steps).
    update_interval : int, default=50
        Iterations between two updates of the target distribution P.
    batch_size : int, default=256
        Mini-batch size of the self-training.
    lr : float, default=1e-3
        Adam learning rate of the self-training (encoder and centers).
    tol : float in [0, 1], default=1e-3
        Stop when the fraction of samples whose label changed between two target
        updates falls below ``tol`` (0 disables the rule).
    n_init : int, default=1
        Independent runs (pretraining included); the one with the lowest
        ``objective_`` is kept.
    kmeans_n_init : int, default=20
        k-means restarts in latent space when initialising the centers (in the spectral
        embedding with ``init="spectral"``).
    init : {"kmeans", "spectral", "spectral_input"}, default="kmeans"
        How the centers start: k-means on the codes, or spectral clustering of their
        nearest-neighbour graph (:func:`npclust.spectral.spectral_clustering`, the start
        of N2D and SpectralNet), or spectral clustering of the input features' graph
        (each center the mean code of one of its clusters; an O(n^2 d) neighbour search
        on the inputs). Measured on four visible data sets (``docs/methods.md``), the
        spectral start of the codes ended DEC 0.00-0.04 higher on each and IDEC 0.015
        lower on the digits; the start from the inputs raised both on three sets
        (digits +0.03-0.04, gauss100 +0.065) but not on the 784-d digits. Neither wins
        everywhere, so both are options, not the default.
    dtype : {"float32", "float64"}, default="float32"
    random_state : None, int or numpy.random.Generator
        Seeds initialisation, shuffling and k-means: a fixed int gives bit-for-bit
        identical fits.
    verbose : int, default=0
        1 prints one progress line per pretraining epoch and per target update.
    checkpoint : str, os.PathLike or None, default=None
        If given, the whole training state is written (atomically) to this ``.npz``
        file after every pretraining epoch, the k-means run and every target update;
        a ``fit`` that
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
        One entry per pretraining epoch (``stage="pretrain"``, reconstruction loss),
        one for the k-means run (``stage="kmeans init"``) and one per target update
        (``stage="cluster"``: mean loss terms since the last update and
        ``delta_label``), plus ACC/NMI/ARI when ``y`` was given to ``fit`` (monitoring
        only). With restarts, stages are labelled ``"restart 2/3 pretrain"`` etc.
    restart_histories_ : list of list of dict
        The history of every restart, in order (``history_`` is the kept one's).
    stop_reason_ : str
        Why the kept run's training ended (all epochs done, ``tol`` reached, ...).

    ``transform`` returns the latent codes, of shape (n_samples, latent_dim);
    ``predict_proba`` the Student-t soft assignments Q.

    Notes
    -----
    ``objective_`` is ``KL(P || Q)`` over the whole training set with P computed from
    the final Q: the self-training loss at a target update. It measures how far the
    soft assignments are from their sharpened version. On the digits it did not rank
    restarts by accuracy (see ``docs/methods.md``), hence ``n_init=1``.
    """

    _fitted_modules = ("encoder_", "decoder_")
    _fitted_arrays = ("labels_", "cluster_centers_")
    _fitted_scalars = ("n_features_in_", "n_iter_", "objective_")

    def __init__(self, n_clusters=10, hidden_dims=(500, 500, 2000), latent_dim=10, alpha=1.0,
                 pretrain_epochs=30, pretrain_batch_size=64, pretrain_lr=1e-3, weight_decay=0.0,
                 corruption=0.2, max_iter=1500, update_interval=50, batch_size=256, lr=1e-3,
                 tol=1e-3, n_init=1, kmeans_n_init=20, init="kmeans", dtype="float32",
                 random_state=None,
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
        self.init = init
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
        check_integer(self.n_clusters, "n_clusters", 1, n_samples)
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
        check_option(self.init, "init", ("kmeans", "spectral", "spectral_input"))

    # ---------------------------------------------------------------- networks
    def _build_model(self, n_features, rng):
        """The untrained encoder and decoder.

        Encoder: ``n_features -> hidden_dims... -> latent_dim``, ReLU after every
        hidden layer, linear latent layer. Decoder: the mirror image, with a linear
        output layer. The parameters of both live in one flat buffer (encoder first),
        so an optimizer updates them with whole-buffer operations. The cluster
        centers join the model when k-means has found them.
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
        return {"encoder": encoder, "decoder": decoder}

    def _expected_shapes(self, n_features, n_samples):
        widths = [n_features, *self.hidden_dims, self.latent_dim]
        return {**linear_stack_shapes("module/encoder_/", widths),
                **linear_stack_shapes("module/decoder_/", widths[::-1]),
                "array/labels_": (n_samples,),
                "array/cluster_centers_": (self.n_clusters, self.latent_dim)}

    # ----------------------------------------------------------------- fitting
    def _fit(self, X, y, rng):
        fit_restarts(self, X, y, rng)

    def _stages(self, n_samples):
        def autoencoder_optimizer(model):
            return Adam(model["encoder"].parameters() + model["decoder"].parameters(),
                        lr=self.pretrain_lr, weight_decay=self.weight_decay)

        def clustering_optimizer(model):
            parameters = model["encoder"].parameters() + [model["centers"]]
            if self._keeps_decoder:
                parameters += model["decoder"].parameters()
            return Adam(parameters, lr=self.lr)

        if self.n_clusters == 1:
            # The one center is the mean code: no training would change the labels.
            return [Stage("kmeans init", 1, self._initial_centers, unit="run")]
        batches_per_epoch = len(batch_boundaries(n_samples, self.pretrain_batch_size)) - 1
        return [
            Stage("pretrain", self.pretrain_epochs, self._pretrain_epoch,
                  batch_size=self.pretrain_batch_size, optimizer=autoencoder_optimizer,
                  steps_per_unit=batches_per_epoch),
            Stage("kmeans init", 1, self._initial_centers, unit="run"),
            Stage("cluster", -(-self.max_iter // self.update_interval), self._self_train,
                  unit="target update", batch_size=self.batch_size,
                  optimizer=clustering_optimizer, begin=self._update_target,
                  steps_per_unit=self.update_interval),
        ]

    def _pretrain_epoch(self, run):
        """One pass of the autoencoder over the data; returns the mean reconstruction error."""
        encoder, decoder = run.model["encoder"], run.model["decoder"]
        total, batches = 0.0, run.batches.epoch()
        for batch in batches:
            run.optimizer.zero_grad()
            x = run.X[batch]
            reconstruction, dz = _reconstruction_backward(
                decoder, encoder(self._corrupt(x, run.rng)), x)
            encoder.backward(dz, input_grad=False)
            run.optimizer.step()
            total += reconstruction
        return {"reconstruction": total / len(batches)}, None, False

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

    def _initial_centers(self, run):
        """The centers from the latent codes: k-means (best inertia of ``kmeans_n_init``
        runs), or the mean code of each spectral cluster (of the codes or the inputs)."""
        z = evaluate(run.model["encoder"], run.X).astype(np.float64)
        if self.init != "kmeans" and self.n_clusters > 1:
            labels = spectral_clustering(z if self.init == "spectral" else run.X, self.n_clusters,
                                         n_init=self.kmeans_n_init, random_state=run.rng)
            centers = np.stack([z[labels == cluster].mean(axis=0)
                                for cluster in range(self.n_clusters)])
        else:
            centers, labels, _, _ = kmeans(z, self.n_clusters, self.kmeans_n_init,
                                           random_state=run.rng)
        run.model["centers"] = nn.Parameter(centers.astype(run.model["encoder"].dtype))
        return {}, labels, False

    def _update_target(self, run):
        """P from the soft assignments of the *whole* data set, held fixed until the next update.

        Returns the labels those soft assignments give.
        """
        soft_assignment = self._soft_assignment_of(run.model, run.X)
        run.variables["target"] = target_distribution(soft_assignment)
        run.variables["previous_labels"] = soft_assignment.argmax(axis=1)
        run.variables.setdefault("n_iter", 0)

    def _self_train(self, run):
        """``update_interval`` steps on (reconstruction +) weight * KL(P || Q), then a target
        update; stops at ``max_iter`` or when fewer than ``tol`` of the labels changed."""
        variables = run.variables
        steps = min(self.update_interval, self.max_iter - variables["n_iter"])
        totals = np.zeros(2)
        for _ in range(steps):
            batch = run.batches.next()
            totals += self._self_training_step(run.model, run.optimizer, run.X[batch],
                                               variables["target"][batch])
        variables["n_iter"] += steps
        totals /= steps
        soft_assignment = self._soft_assignment_of(run.model, run.X)
        labels = soft_assignment.argmax(axis=1)
        delta_label = float(np.mean(labels != variables["previous_labels"]))
        values = {"iteration": variables["n_iter"], "delta_label": delta_label, "kl": totals[0]}
        if self._keeps_decoder:
            values["reconstruction"] = totals[1]
        values["loss"] = totals[1] + self._clustering_weight() * totals[0]
        stop = False
        if delta_label < self.tol:
            stop = (f"converged: {delta_label:.4g} of the labels changed at iteration "
                    f"{variables['n_iter']}, below tol = {self.tol}")
        elif variables["n_iter"] == self.max_iter:
            stop = f"max_iter = {self.max_iter} iterations reached"
        if not stop:
            variables["previous_labels"] = labels
            variables["target"] = target_distribution(soft_assignment)
        return values, labels, stop

    def _self_training_step(self, model, optimizer, x, target):
        """One Adam step; returns (KL, reconstruction) on the batch (reconstruction 0 for DEC)."""
        encoder, centers, weight = model["encoder"], model["centers"], self._clustering_weight()
        optimizer.zero_grad()
        z = encoder(x)
        kl, dz, dcenters = dec_loss(z, centers.data, target, self.alpha)
        dz *= weight
        centers.grad += weight * dcenters
        reconstruction = 0.0
        if self._keeps_decoder:
            reconstruction, dz_reconstruction = _reconstruction_backward(model["decoder"], z, x)
            dz += dz_reconstruction
        encoder.backward(dz, input_grad=False)
        optimizer.step()
        return np.array([kl, reconstruction])

    def _soft_assignment_of(self, model, X):
        return student_t_assignment(evaluate(model["encoder"], X), model["centers"].data,
                                    self.alpha)

    def _objective(self, model, X):
        """KL(P || Q) on the whole data set with P from the final Q, and the labels."""
        return self._kl_and_labels(evaluate(model["encoder"], X), model["centers"].data)

    def _kl_and_labels(self, z, centers):
        soft_assignment = student_t_assignment(z, centers, self.alpha)
        # dec_loss works in log space, so assignments that underflow to 0 stay finite.
        objective, _, _ = dec_loss(z, centers, target_distribution(soft_assignment), self.alpha)
        return objective, soft_assignment.argmax(axis=1)

    def _score_objective(self, X):
        return self._kl_and_labels(in_chunks(self._embed, X), self.cluster_centers_)[0]

    def _set_fitted(self, model, X, history, evaluation=None):
        self.encoder_, self.decoder_, self.history_ = model["encoder"], model["decoder"], history
        iterations = [entry["iteration"] for entry in history if "iteration" in entry]
        self.n_iter_ = iterations[-1] if iterations else 0
        if "centers" not in model:
            # Stopped before clustering: whatever a previous fit left must not pass as
            # the result of this one.
            for attribute in ("cluster_centers_", "labels_", "n_features_in_", "objective_"):
                self.__dict__.pop(attribute, None)
            return
        self.cluster_centers_ = model["centers"].data.copy()
        self.objective_, self.labels_ = evaluation or self._objective(model, X)
        self.n_features_in_ = X.shape[1]

    # --------------------------------------------------------------- inference
    def _embed(self, X_chunk):
        self.encoder_.eval()
        return self.encoder_(X_chunk)

    def _soft_assignment(self, X_chunk):
        return student_t_assignment(self._embed(X_chunk), self.cluster_centers_,
                                    self._fitted_param("alpha"))


class IDEC(DEC):
    """Improved DEC: self-training keeps the decoder, loss = reconstruction + gamma * KL(P || Q).

    Guo et al. observed that DEC's self-training, with the decoder dropped, can
    distort the latent space; IDEC keeps training the whole autoencoder during
    self-training, so the codes must still reconstruct the input. Everything else
    is as in :class:`DEC`, whose parameters IDEC shares, plus:

    Parameters
    ----------
    gamma : float, default=0.1
        Weight of ``KL(P || Q)`` against the reconstruction error in the
        self-training loss ``mse(decoder(z), x) + gamma * KL(P || Q)``
        (Guo et al.'s value).

    Attributes
    ----------
    decoder_ : npclust.nn.Sequential
        Trained in both stages.

    See :class:`DEC` for the other parameters and attributes.
    """

    _keeps_decoder = True

    def __init__(self, n_clusters=10, hidden_dims=(500, 500, 2000), latent_dim=10, alpha=1.0,
                 gamma=0.1, pretrain_epochs=30, pretrain_batch_size=64, pretrain_lr=1e-3,
                 weight_decay=0.0, corruption=0.2, max_iter=1500, update_interval=50,
                 batch_size=256, lr=1e-3, tol=1e-3, n_init=1, kmeans_n_init=20, init="kmeans",
                 dtype="float32", random_state=None, verbose=0, checkpoint=None):
        super().__init__(
            n_clusters=n_clusters, hidden_dims=hidden_dims, latent_dim=latent_dim, alpha=alpha,
            pretrain_epochs=pretrain_epochs, pretrain_batch_size=pretrain_batch_size,
            pretrain_lr=pretrain_lr, weight_decay=weight_decay, corruption=corruption,
            max_iter=max_iter, update_interval=update_interval, batch_size=batch_size, lr=lr,
            tol=tol, n_init=n_init, kmeans_n_init=kmeans_n_init, init=init, dtype=dtype,
            random_state=random_state, verbose=verbose, checkpoint=checkpoint)
        self.gamma = gamma

    def _clustering_weight(self):
        return self.gamma

    def _validate_params(self, X):
        super()._validate_params(X)
        check_positive(self.gamma, "gamma")


def _reconstruction_backward(decoder, z, x):
    """Mean squared reconstruction error of ``decoder(z)`` against ``x``, backpropagated.

    Accumulates the decoder's parameter gradients and returns ``(loss, dloss/dz)``, for
    the caller to pass on to the encoder together with any other term.
    """
    loss, dreconstruction = mse(decoder(z), x)
    return loss, decoder.backward(dreconstruction)
