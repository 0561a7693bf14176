"""Losses for training and clustering, each returning its value and its gradient(s).

Every loss is a function ``loss, *grads = f(inputs...)``: the value as a Python float
and one gradient per differentiable input, in argument order, shaped and typed like
that input. Targets (``target``, ``labels``, ``p``) are constants and get no gradient.

All probability computations go through :mod:`npclust.functional` in log space; no
probability is clipped by an epsilon to dodge ``log(0)``. Where ``p = 0`` multiplies
``log 0`` the term is 0, the limit of ``p log p``.

DEC (Xie, Girshick and Farhadi, "Unsupervised Deep Embedding for Clustering
Analysis", ICML 2016) is covered by :func:`student_t_assignment`,
:func:`target_distribution` and :func:`dec_loss`; IMSAT's information term
(Hu et al., ICML 2017) by :func:`mutual_information`.
"""

import numbers

import numpy as np
from scipy.special import xlogy

from npclust.functional import (
    entropy,
    entropy_backward,
    log_softmax,
    log_softmax_backward,
    logsumexp,
    softmax_backward,
)

__all__ = [
    "mse",
    "cross_entropy",
    "kl_div",
    "mutual_information",
    "student_t_assignment",
    "target_distribution",
    "dec_loss",
]


def _float_array(a, name, axes=None):
    """``a`` as a non-empty floating ndarray; ``axes`` names its dimensions when fixed."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    if axes is not None and a.ndim != len(axes):
        raise ValueError(
            f"{name} must be {len(axes)}-D of shape ({', '.join(axes)}), got shape {a.shape}"
        )
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape}); a loss needs at least one element")
    return a


def _check_same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}"
        )


def mse(pred, target):
    """Mean squared error, ``mean((pred - target) ** 2)`` over all elements.

    Matches ``torch.nn.functional.mse_loss(pred, target, reduction="mean")``.

    Parameters
    ----------
    pred : array_like of any shape
    target : array_like, shaped like ``pred``

    Returns
    -------
    loss : float
    dpred : ndarray, shaped like ``pred``
        ``2 (pred - target) / pred.size``.
    """
    pred = _float_array(pred, "pred")
    target = _float_array(target, "target")
    _check_same_shape(pred, target, "pred", "target")
    diff = pred - target
    loss = float(np.mean(diff * diff))
    return loss, diff * (2.0 / diff.size)


def cross_entropy(logits, labels):
    """Mean negative log-likelihood of integer labels under ``softmax(logits)``.

    Matches ``torch.nn.functional.cross_entropy(logits, labels)`` (mean reduction).

    Parameters
    ----------
    logits : array_like of shape (n_samples, n_classes)
    labels : array_like of int, shape (n_samples,)
        Class indices in ``[0, n_classes)``.

    Returns
    -------
    loss : float
        ``-mean_i log_softmax(logits)[i, labels[i]]``.
    dlogits : ndarray of shape (n_samples, n_classes)
        ``(softmax(logits) - onehot(labels)) / n_samples``.
    """
    logits = _float_array(logits, "logits", ("n_samples", "n_classes"))
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"labels must be an integer array of class indices, got dtype {labels.dtype}"
        )
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D of shape (n_samples,), got shape {labels.shape}")
    n_samples, n_classes = logits.shape
    if labels.shape[0] != n_samples:
        raise ValueError(
            f"logits has {n_samples} rows but labels has {labels.shape[0]} entries; "
            "they must have one label per row"
        )
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"labels must lie in [0, {n_classes}) for {n_classes} classes, "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    log_p = log_softmax(logits, axis=1)
    rows = np.arange(n_samples)
    # + 0.0 turns the -0.0 of perfectly confident correct predictions into 0.0.
    loss = -float(np.mean(log_p[rows, labels])) + 0.0
    dlogits = np.exp(log_p)
    dlogits[rows, labels] -= 1
    dlogits /= n_samples
    return loss, dlogits


def kl_div(log_q, p):
    """KL divergence ``KL(p || q)`` summed and divided by the number of rows.

    PyTorch's ``F.kl_div(input=log_q, target=p, reduction="batchmean")``: the model
    gives *log*-probabilities, the target probabilities.

    Parameters
    ----------
    log_q : array_like of shape (n_samples, ...)
        Log-probabilities of the model distribution.
    p : array_like, shaped like ``log_q``
        Target probabilities (a constant: no gradient is returned for it).

    Returns
    -------
    loss : float
        ``sum(p * (log p - log_q)) / n_samples``, each term 0 where ``p = 0``
        (``0 log 0 = 0``, even against ``log_q = -inf``, where PyTorch gives NaN).
    dlog_q : ndarray, shaped like ``log_q``
        ``-p / n_samples``.
    """
    log_q = _float_array(log_q, "log_q")
    p = _float_array(p, "p")
    if log_q.ndim == 0:
        raise ValueError("log_q must have at least one dimension (the batch axis), got a scalar")
    _check_same_shape(log_q, p, "log_q", "p")
    n_samples = log_q.shape[0]
    # p = 0 contributes nothing whatever log_q is, so 0 * -inf never becomes NaN.
    p_log_q = np.multiply(p, log_q, out=np.zeros(p.shape, np.result_type(p, log_q)), where=p != 0)
    loss = float(np.sum(xlogy(p, p) - p_log_q)) / n_samples
    return loss, -p / n_samples


def mutual_information(logits, mu=4.0):
    """IMSAT/RIM information loss ``H(Y|X) - mu * H(Y)``, to be minimised.

    Minimising it makes each prediction confident (low conditional entropy) while
    keeping the clusters balanced (high entropy of the mean prediction).

    Parameters
    ----------
    logits : array_like of shape (n_samples, n_clusters)
    mu : float, default=4.0
        Weight of the marginal entropy (IMSAT's ``mu``).

    Returns
    -------
    loss : float
        ``mean_i H(p_i) - mu * H(pbar)`` with ``p_i = softmax(logits_i)`` and
        ``pbar = mean_i p_i``; ``log pbar`` is ``logsumexp_i log p_i - log n``.
    dlogits : ndarray of shape (n_samples, n_clusters)
        ``-(p_i (log p_i + H(p_i))) / n + (mu / n) p_i (log pbar - <p_i, log pbar>)``.

    Notes
    -----
    The first term is :func:`~npclust.functional.entropy_backward` with upstream
    gradient ``1/n`` per row. For the second, ``dH(pbar)/dpbar_j = -(log pbar_j + 1)``
    and ``dpbar_j / dp_ij = 1/n``; chaining through the softmax of row ``i``
    (:func:`~npclust.functional.softmax_backward`) drops the constant ``+1``, since
    a softmax is unchanged by adding a constant to all inputs. See
    ``docs/derivations.md``.
    """
    logits = _float_array(logits, "logits", ("n_samples", "n_clusters"))
    if not isinstance(mu, numbers.Real):
        raise TypeError(f"mu must be a real number, got {type(mu).__name__}")
    n_samples = logits.shape[0]
    log_p = log_softmax(logits, axis=1)
    p = np.exp(log_p)
    row_entropy = entropy(logits, axis=1)
    log_pbar = logsumexp(log_p, axis=0) - np.log(n_samples)
    # pbar already sums to 1; entropy's own normalisation only removes rounding.
    marginal_entropy = entropy(log_pbar)
    loss = float(np.mean(row_entropy)) - mu * float(marginal_entropy)

    drow_entropy = np.full(n_samples, 1.0 / n_samples, dtype=p.dtype)
    dlogits = entropy_backward(drow_entropy, log_p, row_entropy, axis=1)
    # A cluster nobody is assigned to has log pbar_j = -inf but p_ij = 0 for every i,
    # so any finite stand-in gives the same product p_ij * log pbar_j = 0.
    log_pbar_finite = np.where(np.isneginf(log_pbar), 0, log_pbar)
    dlogits += softmax_backward((mu / n_samples) * log_pbar_finite, p, axis=1)
    return loss, dlogits


def _check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < np.inf:
        raise ValueError(
            "alpha (the Student-t degrees of freedom) must be a positive finite number, "
            f"got {alpha!r}"
        )


def _check_embedding_and_centers(z, centers):
    z = _float_array(z, "z", ("n_samples", "n_features"))
    centers = _float_array(centers, "centers", ("n_clusters", "n_features"))
    if z.shape[1] != centers.shape[1]:
        raise ValueError(
            f"z has {z.shape[1]} features but centers has {centers.shape[1]}; "
            "each center must live in the embedding space"
        )
    return z, centers


def _log_student_t_assignment(z, centers, alpha):
    """Return ``(log_q, sq_dist)``: log soft assignments and squared distances, both (n, k)."""
    # ||z - mu||^2 = ||z||^2 + ||mu||^2 - 2 z.mu: one GEMM instead of an (n, k, d) tensor.
    sq_dist = z @ centers.T
    sq_dist *= -2
    sq_dist += np.einsum("ij,ij->i", z, z)[:, None]
    sq_dist += np.einsum("ij,ij->i", centers, centers)
    # The expansion cancels for a point at a center and can round below 0.
    np.maximum(sq_dist, 0, out=sq_dist)
    log_kernel = np.log1p(sq_dist / alpha)
    log_kernel *= -(alpha + 1) / 2
    return log_softmax(log_kernel, axis=1), sq_dist


def student_t_assignment(z, centers, alpha=1.0):
    """DEC soft assignment of embedded points to centers with a Student-t kernel.

    Parameters
    ----------
    z : array_like of shape (n_samples, n_features)
        Embedded points.
    centers : array_like of shape (n_clusters, n_features)
        Cluster centers.
    alpha : float, default=1.0
        Degrees of freedom of the Student-t distribution (DEC uses 1).

    Returns
    -------
    soft_assignment : ndarray of shape (n_samples, n_clusters)
        ``q_ij`` proportional to ``(1 + ||z_i - mu_j||^2 / alpha) ** (-(alpha + 1) / 2)``,
        each row summing to 1.

    Notes
    -----
    The kernel is formed in log space, ``-(alpha + 1) / 2 * log1p(d_ij / alpha)``, and
    normalised with :func:`~npclust.functional.log_softmax`. In probability space a
    point far from every center (or a large ``alpha``) underflows every kernel value
    to 0 and the row becomes 0 / 0.

    Examples
    --------
    A point far from both centers, with a heavy exponent: in probability space
    both kernel values underflow and the row is 0 / 0.

    >>> import numpy as np
    >>> z, centers = np.array([[0.0, 0.0]]), np.array([[1e5, 0.0], [-1.1e5, 0.0]])
    >>> kernel = (1 + np.sum((z[:, None] - centers) ** 2, axis=2) / 100.0) ** -50.5
    >>> kernel.tolist()
    [[0.0, 0.0]]
    >>> student_t_assignment(z, centers, alpha=100.0).round(5).tolist()
    [[0.99993, 7e-05]]
    """
    z, centers = _check_embedding_and_centers(z, centers)
    _check_alpha(alpha)
    log_q, _ = _log_student_t_assignment(z, centers, alpha)
    return np.exp(log_q)


def target_distribution(q):
    """DEC auxiliary target ``p_ij = (q_ij^2 / f_j) / sum_l (q_il^2 / f_l)``.

    Squaring sharpens each assignment; dividing by the cluster frequency
    ``f_j = sum_i q_ij`` keeps large clusters from absorbing the rest.

    Parameters
    ----------
    q : array_like of shape (n_samples, n_clusters)
        Soft assignments, each row summing to 1 (see :func:`student_t_assignment`).

    Returns
    -------
    p : ndarray of shape (n_samples, n_clusters)
        Each row sums to 1. An empty cluster (``f_j = 0``, so every ``q_ij = 0``) gets
        ``p_ij = 0`` for all ``i``, the limit of ``q_ij^2 / f_j`` as the cluster
        empties, instead of 0 / 0.
    """
    q = _float_array(q, "q", ("n_samples", "n_clusters"))
    frequency = q.sum(axis=0)
    # q * (q / f) rather than q**2 / f: q / f <= 1 keeps a small cluster's share from
    # underflowing, where q**2 would already be 0.
    sharpened = np.divide(q, frequency, out=np.zeros_like(q), where=frequency > 0)
    sharpened *= q
    return sharpened / sharpened.sum(axis=1, keepdims=True)


def dec_loss(z, centers, p, alpha=1.0):
    """DEC clustering loss ``KL(P || Q)`` per sample, with gradients for points and centers.

    Parameters
    ----------
    z : array_like of shape (n_samples, n_features)
        Embedded points.
    centers : array_like of shape (n_clusters, n_features)
        Cluster centers.
    p : array_like of shape (n_samples, n_clusters)
        Target distribution (see :func:`target_distribution`), held constant.
    alpha : float, default=1.0
        Degrees of freedom of the Student-t kernel.

    Returns
    -------
    loss : float
        ``sum_ij p_ij log(p_ij / q_ij) / n_samples`` with ``q`` from
        :func:`student_t_assignment`.
    dz : ndarray of shape (n_samples, n_features)
        ``(alpha + 1) / (alpha n) * sum_j (1 + d_ij / alpha)^-1 (p_ij - q_ij) (z_i - mu_j)``.
    dcenters : ndarray of shape (n_clusters, n_features)
        ``-(alpha + 1) / (alpha n) * sum_i (1 + d_ij / alpha)^-1 (p_ij - q_ij) (z_i - mu_j)``.

    Notes
    -----
    The chain is ``p -> KL -> log q -> log-softmax -> log kernel -> d_ij -> z, mu``.
    :func:`kl_div` gives ``dlog_q = -p / n``; the log-softmax backward turns it into
    ``(q - p) / n`` on the log kernel (rows of ``p`` summing to 1); the kernel
    contributes ``-(alpha + 1) / (2 (alpha + d_ij))`` and ``d_ij`` the factor
    ``2 (z_i - mu_j)``. The sums over clusters and points are GEMMs,
    ``sum_j W_ij (z_i - mu_j) = z_i sum_j W_ij - (W mu)_i``.
    """
    z, centers = _check_embedding_and_centers(z, centers)
    p = _float_array(p, "p", ("n_samples", "n_clusters"))
    expected = (z.shape[0], centers.shape[0])
    if p.shape != expected:
        raise ValueError(
            f"p must have shape (n_samples, n_clusters) = {expected} for {z.shape[0]} points "
            f"and {centers.shape[0]} centers, got {p.shape}"
        )
    _check_alpha(alpha)
    log_q, sq_dist = _log_student_t_assignment(z, centers, alpha)
    loss, dlog_q = kl_div(log_q, p)
    dlog_kernel = log_softmax_backward(dlog_q, log_q, axis=1)
    # weight_ij = 2 dL/dd_ij, since dd_ij/dz_i = 2 (z_i - mu_j) = -dd_ij/dmu_j.
    weight = dlog_kernel * (-(alpha + 1) / (alpha + sq_dist))
    dz = z * weight.sum(axis=1, keepdims=True) - weight @ centers
    dcenters = centers * weight.sum(axis=0)[:, None] - weight.T @ z
    return loss, dz, dcenters
