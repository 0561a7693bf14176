"""The gradient-check suite: every backward pass in npclust against central differences.

:func:`run_gradcheck_suite` builds every layer, activation, functional VJP and loss
in float64 on small seeded inputs, checks each analytic gradient with
:mod:`npclust.gradcheck.checker`, and returns one :class:`~npclust.gradcheck.GradcheckResult`
per gradient; :func:`format_gradcheck_table` prints them. ``npclust gradcheck`` runs it.

Besides benign random inputs the suite includes the inputs where hand-written
gradients usually break: logits of size +-30, tied logits, ``-inf`` logits (a
probability that is exactly 0), a cluster nearly nobody belongs to and a point
sitting on a cluster center. Inputs to piecewise activations are kept away from the
kinks, where the derivative is a convention and central differences average the two
sides.

Components are looked up through their modules (``nn.ACTIVATIONS``,
``functional.softmax_backward``, ``losses.mse``) when the suite runs, so the suite
checks whatever those names hold at that moment.
"""

import numpy as np

from .. import functional, losses, nn
from ..validation import check_random_state
from .cases import FINITE_LOGIT_KINDS, LOGIT_KINDS, away_from_zero, awkward_logits
from .checker import check_gradient, check_module

__all__ = ["run_gradcheck_suite", "format_gradcheck_table"]


class _ReplayedUniforms:
    """Stands in for Dropout's generator, handing out the same uniform draws on every call.

    A gradient check re-runs ``forward`` once per perturbed coordinate; replaying
    the draws makes every run drop the same elements, so training-mode Dropout is a
    fixed function of its input and can be differentiated numerically.
    """

    def __init__(self, draws):
        self._draws = draws

    def random(self, shape):
        if tuple(shape) != self._draws.shape:
            raise ValueError(f"replayed draws have shape {self._draws.shape}, asked for {shape}")
        return self._draws


# ----------------------------------------------------------------------- modules
def _module_results(label, module, x, rng):
    """Check ``module`` for its input and every parameter, labelled ``"<label>: <what>"``."""
    return [
        result._replace(name=f"{label}: {result.name}")
        for result in check_module(module, x, rng=rng)
    ]


def _activation_label(module):
    # repr shows the non-trivial settings ("LeakyReLU(negative_slope=0.2)"); drop "()".
    return repr(module).removesuffix("()")


def _check_layers(rng):
    f64 = np.float64
    x = rng.normal(size=(6, 5))
    results = []
    results += _module_results("Linear", nn.Linear(5, 4, rng=rng, dtype=f64), x, rng)
    results += _module_results(
        "Linear(bias=False)", nn.Linear(5, 4, bias=False, rng=rng, dtype=f64), x, rng
    )

    # Features on different scales and offsets, so normalising actually does something.
    batch = rng.normal(size=(8, 4)) * [0.5, 1.0, 3.0, 10.0] + [0.0, -2.0, 5.0, 1.0]
    norm = nn.BatchNorm1d(4, dtype=f64)
    norm.weight.data[...] = rng.normal(size=4)
    norm.bias.data[...] = rng.normal(size=4)
    results += _module_results("BatchNorm1d(train)", norm, batch, rng)
    results += _module_results(
        "BatchNorm1d(train, affine=False)", nn.BatchNorm1d(4, affine=False, dtype=f64), batch, rng
    )
    norm(batch)  # one training step gives the running statistics non-default values
    results += _module_results("BatchNorm1d(eval)", norm.eval(), batch, rng)

    results += _module_results("Dropout(eval)", nn.Dropout(0.5).eval(), x, rng)
    dropout = nn.Dropout(0.5)
    dropout.rng = _ReplayedUniforms(rng.random(x.shape))
    results += _module_results("Dropout(train, fixed mask)", dropout, x, rng)

    mlp = nn.Sequential(
        nn.Linear(5, 8, rng=rng, dtype=f64),
        nn.BatchNorm1d(8, dtype=f64),
        nn.ReLU(),
        nn.Linear(8, 6, rng=rng, dtype=f64),
        nn.Tanh(),
        nn.Linear(6, 3, rng=rng, dtype=f64),
        nn.LogSoftmax(dim=1),
    )
    results += _module_results("Sequential MLP", mlp, rng.normal(size=(12, 5)), rng)
    return results


def _check_activations(rng):
    x = away_from_zero(rng.normal(scale=3.0, size=(6, 5)))
    # Saturated sigmoid and tanh, Softplus's linear region (beta x > 20) and its far tail.
    x[0] = [-30.0, -5.0, 19.0, 21.0, 30.0]
    modules = [activation() for activation in nn.ACTIVATIONS.values()]
    modules += [
        nn.ReLU(inplace=True),
        nn.LeakyReLU(negative_slope=0.2),
        nn.ELU(alpha=0.5),
        nn.Softplus(beta=2.0, threshold=5.0),
        nn.Softmax(dim=-1),
        nn.Softmax(dim=0),
        nn.LogSoftmax(dim=-1),
    ]
    results = []
    for module in modules:
        results += _module_results(_activation_label(module), module, x, rng)
    return results


# -------------------------------------------------------------------- functional
def _vjps():
    """``name -> (forward(x, axis), backward(dy, x, y, axis))`` for every functional VJP."""
    return {
        "logsumexp": (
            functional.logsumexp,
            lambda dy, x, y, axis: functional.logsumexp_backward(dy, x, y, axis),
        ),
        "softmax": (
            functional.softmax,
            lambda dy, x, y, axis: functional.softmax_backward(dy, y, axis),
        ),
        "log_softmax": (
            functional.log_softmax,
            lambda dy, x, y, axis: functional.log_softmax_backward(dy, y, axis),
        ),
        "entropy": (
            functional.entropy,
            lambda dy, x, y, axis: functional.entropy_backward(
                dy, functional.log_softmax(x, axis), y, axis
            ),
        ),
    }


def _finite_indices(x):
    # A -inf logit stands for probability 0; x +- eps is -inf again, so it cannot be probed.
    return np.flatnonzero(np.isfinite(x))


def _check_vjp(name, forward, backward, x, axis, rng):
    """Check ``backward`` on ``L = sum(dy * forward(x))`` for a random upstream ``dy``."""
    y = forward(x, axis=axis)
    # log_softmax of a -inf logit is -inf: L sums the finite outputs only, which
    # is an upstream gradient of 0 for the others.
    finite = np.isfinite(y)
    dy = np.where(finite, rng.standard_normal(np.shape(y)), 0.0)
    return check_gradient(
        lambda x: np.sum(dy[finite] * forward(x, axis=axis)[finite]), x,
        backward(dy, x, y, axis), name=name, indices=_finite_indices(x),
    )


def _check_functional(rng):
    results = []
    for name, (forward, backward) in _vjps().items():
        results.append(_check_vjp(name, forward, backward, rng.normal(size=(5, 4)), -1, rng))
        results.append(
            _check_vjp(f"{name} (axis=0)", forward, backward, rng.normal(size=(5, 4)), 0, rng)
        )
        for kind in LOGIT_KINDS[1:]:
            logits = awkward_logits(kind, (5, 4), rng)
            results.append(_check_vjp(f"{name} ({kind})", forward, backward, logits, -1, rng))
    return results


# ------------------------------------------------------------------------ losses
def _check_loss(label, loss, inputs):
    """Check every gradient ``loss(*inputs)`` returns, at each input's finite coordinates.

    ``inputs`` maps a name to each differentiable argument, in argument order; the
    results are named ``"<label>: <name>"``.
    """
    arrays = list(inputs.values())
    _, *gradients = loss(*arrays)
    return [
        check_gradient(
            lambda _: loss(*arrays)[0], x, gradient, name=f"{label}: {name}",
            indices=_finite_indices(x),
        )
        for (name, x), gradient in zip(inputs.items(), gradients)
    ]


def _check_mse(rng):
    target = rng.normal(size=(6, 3))
    return _check_loss(
        "mse", lambda pred: losses.mse(pred, target), {"pred": rng.normal(size=(6, 3))}
    )


def _check_cross_entropy(rng):
    results = []
    for kind in FINITE_LOGIT_KINDS:
        logits = awkward_logits(kind, (6, 4), rng)
        # With +-30 logits about half the labels fall on a class at -30: confidently wrong.
        labels = rng.integers(0, 4, size=6)
        label = "cross_entropy" if kind == "random" else f"cross_entropy ({kind})"
        results += _check_loss(
            label, lambda logits: losses.cross_entropy(logits, labels), {"logits": logits}
        )
    return results


def _check_kl_div(rng):
    log_q = functional.log_softmax(rng.normal(size=(6, 4)), axis=1)
    p = functional.softmax(rng.normal(size=(6, 4)), axis=1)
    p[:, 0] = 0  # a class the target never uses
    p /= p.sum(axis=1, keepdims=True)
    results = _check_loss("kl_div", lambda log_q: losses.kl_div(log_q, p), {"log_q": log_q})
    # The model rules that class out too: terms 0 * log 0 against log_q = -inf.
    log_q = log_q.copy()
    log_q[:, 0] = -np.inf
    results += _check_loss(
        "kl_div (p = 0 where log_q = -inf)", lambda log_q: losses.kl_div(log_q, p),
        {"log_q": log_q},
    )
    return results


def _check_mutual_information(rng):
    cases = {kind: awkward_logits(kind, (6, 4), rng) for kind in FINITE_LOGIT_KINDS}
    near_empty = rng.normal(size=(6, 4))
    near_empty[:, 0] -= 25.0  # pbar_0 ~ 1e-11: its log must come from log space
    cases["near-empty cluster"] = near_empty
    empty = rng.normal(size=(6, 4))
    empty[:, 0] = -np.inf  # pbar_0 = 0 exactly, log pbar_0 = -inf
    cases["empty cluster"] = empty
    results = []
    for kind, logits in cases.items():
        label = "mutual_information" if kind == "random" else f"mutual_information ({kind})"
        results += _check_loss(label, losses.mutual_information, {"logits": logits})
    return results


def _check_dec_loss(rng):
    n_samples, n_features, n_clusters = 8, 3, 4
    z = rng.normal(size=(n_samples, n_features))
    centers = rng.normal(size=(n_clusters, n_features))
    point_on_center = z.copy()
    point_on_center[0] = centers[1]
    far_center = centers.copy()
    far_center[0] = 20.0  # q_i0 ~ 1e-3 for every point: a nearly empty cluster
    cases = [
        ("dec_loss", z, centers, 1.0),
        ("dec_loss (point at a center)", point_on_center, centers, 1.0),
        ("dec_loss (near-empty cluster)", z, far_center, 1.0),
        ("dec_loss (alpha=0.5)", z, centers, 0.5),
    ]
    results = []
    for label, z, centers, alpha in cases:
        # DEC computes the target once and holds it fixed while the loss is minimised.
        p = losses.target_distribution(losses.student_t_assignment(z, centers, alpha))
        results += _check_loss(
            label,
            lambda z, centers: losses.dec_loss(z, centers, p, alpha),
            {"z": z.copy(), "centers": centers.copy()},
        )
    return results


# ------------------------------------------------------------------------- suite
def run_gradcheck_suite(seed=0):
    """Check every backward pass in npclust against float64 central differences.

    Covers every layer (Linear with and without bias; BatchNorm1d with and without
    the affine map in training mode, and in evaluation mode; Dropout in evaluation
    mode and in training mode with a fixed mask; a Sequential MLP), every
    activation in ``nn.ACTIVATIONS`` plus non-default settings, Softmax and
    LogSoftmax, the VJPs of :mod:`npclust.functional` and the gradients of every
    loss in :mod:`npclust.losses`, on benign and awkward inputs.

    Parameters
    ----------
    seed : None, int or numpy.random.Generator, default=0
        Seeds the inputs, the parameter initialisation and the upstream gradients.

    Returns
    -------
    list of GradcheckResult
        One per checked gradient, named ``"<component>: <gradient>"`` for modules
        and losses (``"Linear: weight"``, ``"dec_loss: centers"``) and by the function
        for VJPs (``"softmax"``); a case other than plain random input is named in
        parentheses (``"softmax (tied logits)"``). ``passed`` applies the criterion
        of :func:`~npclust.gradcheck.check_gradient`.

    Notes
    -----
    Gradients of ``-inf`` inputs cannot be estimated by finite differences, so
    cases with ``-inf`` logits probe only the finite coordinates.
    """
    rng = check_random_state(seed)
    checks = (
        _check_layers, _check_activations, _check_functional,
        _check_mse, _check_cross_entropy, _check_kl_div, _check_mutual_information,
        _check_dec_loss,
    )
    return [result for check in checks for result in check(rng)]


def format_gradcheck_table(results):
    """Lay out gradient-check results as a plain-text table.

    Parameters
    ----------
    results : iterable of GradcheckResult

    Returns
    -------
    str
        Columns ``component``, ``max abs error``, ``max rel error`` and ``result``
        (``PASS`` or ``FAIL``), one row per result, and a closing line counting the
        failures. No trailing newline.
    """
    results = list(results)
    headers = ("component", "max abs error", "max rel error", "result")
    rows = [
        (
            result.name,
            f"{result.max_abs_error:.2e}",
            f"{result.max_rel_error:.2e}",
            "PASS" if result.passed else "FAIL",
        )
        for result in results
    ]
    widths = [max(len(row[column]) for row in [headers, *rows]) for column in range(4)]

    def line(cells):
        # Names read best left-aligned, numbers and verdicts right-aligned.
        name, *values = cells
        padded = [value.rjust(width) for value, width in zip(values, widths[1:])]
        return "  ".join([name.ljust(widths[0]), *padded])

    n_failed = sum(not result.passed for result in results)
    lines = [line(headers), "  ".join("-" * width for width in widths)]
    lines += [line(row) for row in rows]
    lines.append(f"{len(results)} gradients checked, {n_failed} failed")
    return "\n".join(lines)

