"""Why a sigmoid before the softmax caps a clustering network's confidence, measured.

If the logits ``l`` that enter a softmax over ``k`` clusters are confined to an
interval ``[low, high]`` (a sigmoid gives (0, 1), a tanh (-1, 1)), the largest
probability a row can reach is

    max_j softmax(l)_j <= e^high / (e^high + (k - 1) e^low),

reached when one logit sits at ``high`` and all others at ``low``. For two clusters
and tanh-range logits that is ``e / (e + 1/e) = 0.8808``; for ten clusters and
sigmoid-range logits ``e / (e + 9) = 0.2320``. No amount of training gets past it.
A *linear* last layer leaves the logits unbounded, so confidence is limited only by
what the loss asks for. :func:`compare_output_layers` trains the same small network
both ways and reports the mean largest probability each one reaches.
"""

import numpy as np

from . import nn
from .functional import softmax
from .losses import mutual_information
from .optim import Adam
from .validation import check_random_state

__all__ = ["softmax_confidence_cap", "compare_output_layers"]


def softmax_confidence_cap(n_clusters, low, high):
    """Largest softmax probability reachable with logits confined to ``[low, high]``.

    Parameters
    ----------
    n_clusters : int
        Number of softmax outputs (at least 2).
    low, high : float
        Bounds of the logits, ``low <= high``.

    Returns
    -------
    float
        ``1 / (1 + (n_clusters - 1) * exp(low - high))``, which equals
        ``e^high / (e^high + (n_clusters - 1) e^low)`` without overflowing.
    """
    if n_clusters < 2:
        raise ValueError(f"n_clusters must be at least 2, got {n_clusters}")
    if low > high:
        raise ValueError(f"low ({low}) must not exceed high ({high})")
    return 1.0 / (1.0 + (n_clusters - 1) * np.exp(low - high))


def _network(n_features, n_clusters, hidden, sigmoid_logits, rng):
    layers = [nn.Linear(n_features, hidden, rng=rng, dtype=np.float64), nn.ReLU(),
              nn.Linear(hidden, n_clusters, rng=rng, dtype=np.float64)]
    if sigmoid_logits:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def compare_output_layers(X, n_clusters, hidden=256, epochs=30, batch_size=250, lr=2e-3,
                          mu=4.0, random_state=0):
    """Train one network with sigmoid logits and one with linear logits; compare confidence.

    Both are ``Linear -> ReLU -> Linear [-> Sigmoid] -> softmax``, trained with Adam on
    the IMSAT information loss ``H(Y|X) - mu H(Y)`` from the same initial weights and
    the same batches; only the sigmoid differs.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    n_clusters : int
    hidden : int, default=256
    epochs : int, default=30
    batch_size : int, default=250
    lr : float, default=2e-3
    mu : float, default=4.0
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    dict
        ``"sigmoid"`` and ``"linear"``: the mean over samples of the largest softmax
        probability after training; ``"cap"``: :func:`softmax_confidence_cap` for
        logits in (0, 1), the bound the sigmoid network cannot pass.
    """
    X = np.asarray(X, dtype=np.float64)
    rng = check_random_state(random_state)
    seed = int(rng.integers(2**31))
    confidence = {}
    for name, sigmoid_logits in (("sigmoid", True), ("linear", False)):
        run_rng = np.random.default_rng(seed)
        network = _network(X.shape[1], n_clusters, hidden, sigmoid_logits, run_rng)
        optimizer = Adam(network.parameters(), lr=lr)
        for _ in range(epochs):
            order = run_rng.permutation(X.shape[0])
            for start in range(0, X.shape[0] - 1, batch_size):
                optimizer.zero_grad()
                _, dlogits = mutual_information(network(X[order[start:start + batch_size]]), mu)
                network.backward(dlogits, input_grad=False)
                optimizer.step()
        confidence[name] = float(softmax(network(X)).max(axis=1).mean())
    confidence["cap"] = float(softmax_confidence_cap(n_clusters, 0.0, 1.0))
    return confidence
