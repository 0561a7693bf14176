"""Parity with PyTorch: every layer, functional op and loss, and whole training steps.

Each test builds the same computation in npclust and in PyTorch (``torch.nn`` layers,
``torch.nn.functional``, or the formula written with torch operations and
differentiated by autograd) from the same numbers, and compares outputs, input
gradients and parameter gradients.

Agreement is measured as the normwise relative error
``max|npclust - torch| / max|torch|`` per array: at most 1e-10 in float64 and 1e-5 in
float32. Parameter gradients are measured relative to the largest parameter gradient
of the whole module, since some are 0 in exact arithmetic (the bias of a Linear layer
feeding a training-mode BatchNorm) and both libraries return rounding noise for them.
(An elementwise relative error would fail on such noise entries for the same reason.)

The optimizers' own parity with ``torch.optim`` is tested in ``test_optim.py``; here
Adam only appears inside whole training steps.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from npclust import functional, nn  # noqa: E402
from npclust.cluster import DEC, IMSAT  # noqa: E402
from npclust.losses import (  # noqa: E402
    cross_entropy,
    dec_loss,
    kl_div,
    mse,
    mutual_information,
    student_t_assignment,
    target_distribution,
)

F = torch.nn.functional
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-5}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])


def relative_error(got, expected, scale=None):
    """``max|got - expected| / scale``, ``scale`` defaulting to ``max|expected|``.

    The absolute error is returned when the scale is 0.
    """
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    error = float(np.max(np.abs(got - expected), initial=0.0))
    if scale is None:
        scale = float(np.max(np.abs(expected), initial=0.0))
    return error / scale if scale > 0 else error


def assert_close(got, expected, dtype, what, scale=None):
    """Assert npclust's ``got`` matches torch's ``expected`` (a tensor or array) in ``dtype``.

    ``scale`` (default ``max|expected|``) is what the error is relative to.
    """
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, torch has {expected.shape}"
    assert np.all(np.isfinite(got) == np.isfinite(expected)), f"{what}: non-finite entries differ"
    finite = np.isfinite(expected)
    error = relative_error(got[finite], expected[finite], scale)
    assert error <= TOLERANCE[dtype], f"{what}: relative error {error:.3g} vs torch"


def as_tensor(array, requires_grad=False):
    return torch.tensor(np.asarray(array), requires_grad=requires_grad)


def load_into_torch(torch_module, module):
    """Copy npclust ``module``'s state dict into ``torch_module`` (the documented porting path)."""
    torch_module.load_state_dict({k: torch.from_numpy(v) for k, v in module.state_dict().items()})
    return torch_module


def logits_sample(rng, shape, large, dtype=np.float64):
    """Random logits; ``large`` puts them at -1e4, 0 or +1e4 with O(1) differences on top.

    With ``large`` the first min(shape) diagonal entries are raised to 2e4 so that
    every class (last axis) wins at least one row: no class has probability 0 everywhere.
    """
    logits = 3.0 * rng.standard_normal(shape)
    if large:
        logits += rng.choice([-1e4, 0.0, 1e4], size=shape)
        index = np.arange(min(shape))
        logits[(index,) * len(shape)] = 2e4
    return logits.astype(dtype)


# ------------------------------------------------------------------------------ layers
# Each case: (npclust factory, torch factory taking a torch dtype). The torch layer gets
# npclust's weights through load_state_dict, so these tests are independent of interop.


def _torch_batchnorm(num_features, track_running_stats=True, **kwargs):
    """torch layer matching npclust's BatchNorm1d: running statistics kept either way."""

    def build(dtype):
        layer = torch.nn.BatchNorm1d(num_features, dtype=dtype, **kwargs)
        layer.track_running_stats = track_running_stats
        return layer

    return build


LAYERS = {
    "linear": (lambda: nn.Linear(5, 4, rng=0), lambda d: torch.nn.Linear(5, 4, dtype=d)),
    "linear_no_bias": (
        lambda: nn.Linear(5, 4, bias=False, rng=1),
        lambda d: torch.nn.Linear(5, 4, bias=False, dtype=d),
    ),
    "relu": (nn.ReLU, lambda d: torch.nn.ReLU()),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), lambda d: torch.nn.LeakyReLU(0.2)),
    "elu": (lambda: nn.ELU(0.7), lambda d: torch.nn.ELU(0.7)),
    "sigmoid": (nn.Sigmoid, lambda d: torch.nn.Sigmoid()),
    "tanh": (nn.Tanh, lambda d: torch.nn.Tanh()),
    "softplus": (nn.Softplus, lambda d: torch.nn.Softplus()),
    "softplus_beta_threshold": (
        lambda: nn.Softplus(beta=2.0, threshold=3.0),
        lambda d: torch.nn.Softplus(beta=2.0, threshold=3.0),
    ),
    "identity": (nn.Identity, lambda d: torch.nn.Identity()),
    "softmax": (nn.Softmax, lambda d: torch.nn.Softmax(dim=-1)),
    "softmax_dim0": (lambda: nn.Softmax(dim=0), lambda d: torch.nn.Softmax(dim=0)),
    "log_softmax": (nn.LogSoftmax, lambda d: torch.nn.LogSoftmax(dim=-1)),
    "log_softmax_dim0": (lambda: nn.LogSoftmax(dim=0), lambda d: torch.nn.LogSoftmax(dim=0)),
    "batchnorm": (lambda: nn.BatchNorm1d(5), _torch_batchnorm(5)),
    "batchnorm_no_affine": (
        lambda: nn.BatchNorm1d(5, affine=False), _torch_batchnorm(5, affine=False)
    ),
    "batchnorm_momentum_none_eps": (
        lambda: nn.BatchNorm1d(5, momentum=None, eps=1e-3),
        _torch_batchnorm(5, momentum=None, eps=1e-3),
    ),
    "batchnorm_not_tracking": (
        lambda: nn.BatchNorm1d(5, momentum=0.3, track_running_stats=False),
        _torch_batchnorm(5, momentum=0.3, track_running_stats=False),
    ),
    "dropout_p0": (lambda: nn.Dropout(0.0, rng=0), lambda d: torch.nn.Dropout(0.0)),
    "dropout_eval_only": (lambda: nn.Dropout(0.4, rng=0), lambda d: torch.nn.Dropout(0.4)),
    "nested_sequential": (
        lambda: nn.Sequential(
            nn.Linear(5, 6, rng=2), nn.BatchNorm1d(6), nn.ELU(),
            nn.Sequential(nn.Linear(6, 6, rng=3), nn.Tanh()),
            nn.Linear(6, 3, rng=4), nn.LogSoftmax(),
        ),
        lambda d: torch.nn.Sequential(
            torch.nn.Linear(5, 6, dtype=d), torch.nn.BatchNorm1d(6, dtype=d), torch.nn.ELU(),
            torch.nn.Sequential(torch.nn.Linear(6, 6, dtype=d), torch.nn.Tanh()),
            torch.nn.Linear(6, 3, dtype=d), torch.nn.LogSoftmax(dim=-1),
        ),
    ),
}
# Dropout with p > 0 draws different masks in the two libraries: only eval mode compares.
LAYER_MODES = [
    pytest.param(name, training, id=f"{name}-{'train' if training else 'eval'}")
    for name in sorted(LAYERS)
    for training in (True, False)
    if not (training and name == "dropout_eval_only")
]


def _randomize_batchnorm(module, rng):
    """Non-trivial scale, shift and running statistics, so all of them are exercised."""
    for sub in module.modules():
        if isinstance(sub, nn.BatchNorm1d):
            if sub.affine:
                sub.weight.data[...] = rng.uniform(0.5, 2.0, sub.num_features)
                sub.bias.data[...] = rng.standard_normal(sub.num_features)
            sub.running_mean[...] = rng.standard_normal(sub.num_features)
            sub.running_var[...] = rng.uniform(0.5, 3.0, sub.num_features)
            sub.num_batches_tracked[...] = 3


def _layer_input(rng, dtype):
    """Standard normal rows scaled by 4, plus one row with kinks (0) and far tails (+-30)."""
    x = 4.0 * rng.standard_normal((9, 5))
    x[0] = [-30.0, -8.0, 0.0, 8.0, 30.0]
    return x.astype(dtype)


@DTYPES
@pytest.mark.parametrize("name, training", LAYER_MODES)
def test_layer_matches_torch(name, training, dtype):
    rng = np.random.default_rng(0)
    make_module, make_torch_module = LAYERS[name]
    module = make_module().to(dtype)
    _randomize_batchnorm(module, rng)
    torch_module = load_into_torch(make_torch_module(TORCH_DTYPE[dtype]), module)
    module.train(training)
    torch_module.train(training)

    x = _layer_input(rng, dtype)
    x_tensor = as_tensor(x, requires_grad=True)
    y = module(x.copy())
    y_tensor = torch_module(x_tensor)
    assert y.dtype == dtype
    assert_close(y, y_tensor, dtype, f"{name} output")

    dy = rng.standard_normal(y.shape).astype(dtype)
    module.zero_grad()
    dx = module.backward(dy)
    y_tensor.backward(as_tensor(dy))
    assert_close(dx, x_tensor.grad, dtype, f"{name} input gradient")

    torch_parameters = dict(torch_module.named_parameters())
    assert sorted(torch_parameters) == sorted(key for key, _ in module.named_parameters())
    # Relative to the whole parameter gradient: a Linear bias feeding a training-mode
    # BatchNorm has gradient 0 in exact arithmetic, and both libraries return ~1e-17 noise.
    gradient_scale = max(
        (float(parameter.grad.abs().max()) for parameter in torch_parameters.values()),
        default=None,
    )
    for key, parameter in module.named_parameters():
        assert_close(parameter.grad, torch_parameters[key].grad, dtype, f"{name} {key} gradient",
                     scale=gradient_scale)
    torch_buffers = dict(torch_module.named_buffers())
    for key, buffer in module.named_buffers():
        assert_close(buffer, torch_buffers[key], dtype, f"{name} {key} after forward")


def test_dropout_train_mode_follows_torch_rule():
    """Masks differ by construction; the rule (scale 1/(1-p), gradient = mask) is shared."""
    p = 0.3
    x = np.ones((200, 100))
    dy = np.random.default_rng(1).standard_normal(x.shape)
    module, torch_module = nn.Dropout(p, rng=0), torch.nn.Dropout(p)
    torch.manual_seed(0)
    x_tensor = as_tensor(x, requires_grad=True)
    y_tensor = torch_module(x_tensor)
    y_tensor.backward(as_tensor(dy))
    y = module(x)
    results = [(y, module.backward(dy)), (y_tensor.detach().numpy(), x_tensor.grad)]
    for output, input_grad in results:
        assert set(np.unique(output)) == {0.0, 1.0 / (1.0 - p)}
        np.testing.assert_array_equal(np.asarray(input_grad), dy * output)
        assert abs(np.mean(output == 0) - p) < 0.02


# ------------------------------------------------------------------- functional ops

AXES = [-1, 0, (0, 2), None]


def _torch_dim(axis, ndim):
    return tuple(range(ndim)) if axis is None else axis


@DTYPES
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("large", [False, True], ids=["moderate", "large"])
def test_logsumexp_matches_torch(large, axis, keepdims, dtype):
    rng = np.random.default_rng(1)
    x = logits_sample(rng, (4, 5, 6), large, dtype)
    x_tensor = as_tensor(x, requires_grad=True)
    lse = functional.logsumexp(x, axis=axis, keepdims=keepdims)
    lse_tensor = torch.logsumexp(x_tensor, dim=_torch_dim(axis, x.ndim), keepdim=keepdims)
    assert_close(lse, lse_tensor, dtype, "logsumexp")
    dy = rng.standard_normal(np.shape(lse)).astype(dtype)
    lse_tensor.backward(as_tensor(dy))
    dx = functional.logsumexp_backward(dy, x, lse, axis=axis)
    assert_close(dx, x_tensor.grad, dtype, "logsumexp backward")


@DTYPES
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("large", [False, True], ids=["moderate", "large"])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_and_log_softmax_match_torch(log, large, axis, dtype):
    rng = np.random.default_rng(2)
    x = logits_sample(rng, (4, 5, 6), large, dtype)
    x_tensor = as_tensor(x, requires_grad=True)
    if log:
        y, y_tensor = functional.log_softmax(x, axis=axis), torch.log_softmax(x_tensor, dim=axis)
    else:
        y, y_tensor = functional.softmax(x, axis=axis), torch.softmax(x_tensor, dim=axis)
    assert_close(y, y_tensor, dtype, "log_softmax" if log else "softmax")
    dy = rng.standard_normal(y.shape).astype(dtype)
    y_tensor.backward(as_tensor(dy))
    if log:
        dx = functional.log_softmax_backward(dy, y, axis=axis)
    else:
        dx = functional.softmax_backward(dy, y, axis=axis)
    assert_close(dx, x_tensor.grad, dtype, "log_softmax backward" if log else "softmax backward")


@DTYPES
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("large", [False, True], ids=["moderate", "large"])
def test_entropy_matches_torch_autograd(large, axis, dtype):
    rng = np.random.default_rng(3)
    logits = logits_sample(rng, (7, 5), large, dtype)
    logits_tensor = as_tensor(logits, requires_grad=True)
    h = functional.entropy(logits, axis=axis)
    h_tensor = -(
        torch.softmax(logits_tensor, dim=axis) * torch.log_softmax(logits_tensor, dim=axis)
    ).sum(dim=axis)
    assert_close(h, h_tensor, dtype, "entropy")
    dh = rng.standard_normal(h.shape).astype(dtype)
    h_tensor.backward(as_tensor(dh))
    dlogits = functional.entropy_backward(
        dh, functional.log_softmax(logits, axis=axis), h, axis=axis
    )
    assert_close(dlogits, logits_tensor.grad, dtype, "entropy backward")


@DTYPES
@pytest.mark.parametrize("axis", [-1, 0])
def test_entropy_from_probs_matches_torch_entr(axis, dtype):
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.full(5, 0.5), size=7).astype(dtype)
    p[0, 1] = 0.0
    h = functional.entropy_from_probs(p, axis=axis)
    assert_close(h, torch.special.entr(as_tensor(p)).sum(dim=axis), dtype, "entropy_from_probs")


# ---------------------------------------------------------------------------- losses


@DTYPES
def test_mse_matches_torch(dtype):
    rng = np.random.default_rng(5)
    pred, target = (rng.standard_normal((6, 4)).astype(dtype) for _ in range(2))
    pred_tensor = as_tensor(pred, requires_grad=True)
    loss_tensor = F.mse_loss(pred_tensor, as_tensor(target))
    loss_tensor.backward()
    loss, dpred = mse(pred, target)
    assert_close(loss, loss_tensor, dtype, "mse")
    assert_close(dpred, pred_tensor.grad, dtype, "mse gradient")


@DTYPES
@pytest.mark.parametrize("large", [False, True], ids=["moderate", "large"])
def test_cross_entropy_matches_torch(large, dtype):
    rng = np.random.default_rng(6)
    logits = logits_sample(rng, (8, 5), large, dtype)
    labels = rng.integers(0, 5, size=8)
    logits_tensor = as_tensor(logits, requires_grad=True)
    loss_tensor = F.cross_entropy(logits_tensor, torch.from_numpy(labels))
    loss_tensor.backward()
    loss, dlogits = cross_entropy(logits, labels)
    assert_close(loss, loss_tensor, dtype, "cross_entropy")
    assert_close(dlogits, logits_tensor.grad, dtype, "cross_entropy gradient")


@DTYPES
def test_kl_div_matches_torch_batchmean(dtype):
    rng = np.random.default_rng(7)
    log_q = functional.log_softmax(rng.standard_normal((6, 4))).astype(dtype)
    p = rng.dirichlet(np.ones(4), size=6)
    p[1, 2] = 0.0  # 0 log 0 = 0, with log_q finite both libraries agree
    p = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
    log_q_tensor = as_tensor(log_q, requires_grad=True)
    loss_tensor = F.kl_div(log_q_tensor, as_tensor(p), reduction="batchmean")
    loss_tensor.backward()
    loss, dlog_q = kl_div(log_q, p)
    assert_close(loss, loss_tensor, dtype, "kl_div")
    assert_close(dlog_q, log_q_tensor.grad, dtype, "kl_div gradient")


def torch_mutual_information(logits, mu):
    """IMSAT's ``H(Y|X) - mu H(Y)`` written directly with torch operations."""
    p, log_p = torch.softmax(logits, dim=1), torch.log_softmax(logits, dim=1)
    conditional_entropy = -(p * log_p).sum(dim=1).mean()
    p_mean = p.mean(dim=0)
    marginal_entropy = -(p_mean * torch.log(p_mean)).sum()
    return conditional_entropy - mu * marginal_entropy


@DTYPES
@pytest.mark.parametrize("mu", [4.0, 0.5])
@pytest.mark.parametrize("large", [False, True], ids=["moderate", "large"])
def test_mutual_information_matches_torch_autograd(large, mu, dtype):
    rng = np.random.default_rng(8)
    logits = logits_sample(rng, (16, 4), large, dtype)
    logits_tensor = as_tensor(logits, requires_grad=True)
    loss_tensor = torch_mutual_information(logits_tensor, mu)
    loss_tensor.backward()
    loss, dlogits = mutual_information(logits, mu=mu)
    assert_close(loss, loss_tensor, dtype, "mutual_information")
    assert_close(dlogits, logits_tensor.grad, dtype, "mutual_information gradient")


def torch_student_t(z, centers, alpha):
    """DEC's soft assignment as in the paper, in probability space."""
    sq_dist = ((z[:, None, :] - centers[None, :, :]) ** 2).sum(dim=2)
    kernel = (1.0 + sq_dist / alpha) ** (-(alpha + 1.0) / 2.0)
    return kernel / kernel.sum(dim=1, keepdim=True)


def torch_target_distribution(q):
    weight = q**2 / q.sum(dim=0)
    return weight / weight.sum(dim=1, keepdim=True)


def _embedding_and_centers(rng, dtype, n_samples=10):
    z = rng.standard_normal((n_samples, 3)).astype(dtype)
    centers = (1.5 * rng.standard_normal((4, 3))).astype(dtype)
    return z, centers


@DTYPES
@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_student_t_assignment_and_target_distribution_match_torch(alpha, dtype):
    z, centers = _embedding_and_centers(np.random.default_rng(9), dtype)
    q = student_t_assignment(z, centers, alpha=alpha)
    q_tensor = torch_student_t(as_tensor(z), as_tensor(centers), alpha)
    assert_close(q, q_tensor, dtype, "student_t_assignment")
    assert_close(target_distribution(q), torch_target_distribution(q_tensor), dtype,
                 "target_distribution")


@DTYPES
@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_dec_loss_matches_torch_autograd(alpha, dtype):
    rng = np.random.default_rng(10)
    z, centers = _embedding_and_centers(rng, dtype)
    # A target from other assignments, so that P differs from Q and the gradient is not 0.
    p = target_distribution(student_t_assignment(z + rng.standard_normal(z.shape), centers))
    p = p.astype(dtype)
    z_tensor = as_tensor(z, requires_grad=True)
    centers_tensor = as_tensor(centers, requires_grad=True)
    q_tensor = torch_student_t(z_tensor, centers_tensor, alpha)
    loss_tensor = F.kl_div(torch.log(q_tensor), as_tensor(p), reduction="batchmean")
    loss_tensor.backward()
    loss, dz, dcenters = dec_loss(z, centers, p, alpha=alpha)
    assert_close(loss, loss_tensor, dtype, "dec_loss")
    assert_close(dz, z_tensor.grad, dtype, "dec_loss gradient z")
    assert_close(dcenters, centers_tensor.grad, dtype, "dec_loss gradient centers")


# ------------------------------------------------------------------- training steps

N_STEPS = 5


def _assert_same_state(module, torch_module, skip=()):
    """Parameters and buffers agree with ``torch_module``'s, except keys in ``skip``."""
    torch_state = torch_module.state_dict()
    for key, value in module.state_dict().items():
        if key not in skip:
            assert_close(value, torch_state[key], np.float64, f"{key} after {N_STEPS} steps")


def test_imsat_training_steps_match_torch():
    """Linear-BatchNorm-ReLU x2 - Linear, mutual information loss, Adam; 5 mini-batches.

    The biases of the Linear layers feeding a BatchNorm get gradient 0 in exact
    arithmetic (the BatchNorm subtracts the batch mean); each library returns
    rounding noise ``g`` of ~1e-17 instead, a different one. Adam turns a gradient
    far below ``eps`` into a step of ``lr * m_hat / eps``, with ``|m_hat| <= max|g|``,
    so these biases drift apart by at most ``2 * n_steps * lr * max|g| / eps``
    (~1e-10 here), and so do the running means they shift. The test checks that
    bound and that the noise really is noise; everything else must agree to 1e-10,
    and the trained networks must give the same training-mode output, which the
    drifting biases do not affect.
    """
    rng = np.random.default_rng(11)
    x = rng.standard_normal((64, 10))
    batches = [rng.choice(64, size=16, replace=False) for _ in range(N_STEPS)]
    # The estimator's own network, optimizer and training step (no VAT: its probes are
    # random draws the torch side cannot share).
    imsat = IMSAT(n_clusters=4, hidden_dims=(12, 12), vat=False, lr=0.01, dtype="float64")
    network = imsat._build_model(10, np.random.default_rng(0))["network"]
    torch_network = load_into_torch(torch.nn.Sequential(
        torch.nn.Linear(10, 12), torch.nn.BatchNorm1d(12), torch.nn.ReLU(),
        torch.nn.Linear(12, 12), torch.nn.BatchNorm1d(12), torch.nn.ReLU(),
        torch.nn.Linear(12, 4),
    ).double(), network)
    stage = imsat._stages(64)[0]
    optimizer = stage.optimizer({"network": network})
    lr, eps = imsat.lr, optimizer.eps
    torch_optimizer = torch.optim.Adam(torch_network.parameters(), lr=lr, eps=eps)
    # (index of the Linear layer, index of the BatchNorm it feeds)
    linear_before_batchnorm = [(0, 1), (3, 4)]
    bias_noise = 0.0

    for batch in batches:
        network.train()
        loss, information, _ = imsat._step(network, optimizer, x[batch], None, None)

        torch_optimizer.zero_grad()
        information_tensor = torch_mutual_information(torch_network(as_tensor(x[batch])), imsat.mu)
        (imsat.lam * information_tensor).backward()
        torch_optimizer.step()
        assert_close(information, information_tensor, np.float64, "IMSAT step information term")
        assert loss == imsat.lam * information

        for linear, _ in linear_before_batchnorm:
            bias_noise = max(
                bias_noise,
                np.abs(network[linear].bias.grad).max(),
                torch_network[linear].bias.grad.abs().max().item(),
            )
        gradient_scale = max(np.abs(p.grad).max() for p in network.parameters())
        assert bias_noise < 1e-12 * gradient_scale, "a bias before BatchNorm got a real gradient"

    drift_bound = 2 * N_STEPS * lr * bias_noise / eps
    torch_state = torch_network.state_dict()
    for linear, batchnorm in linear_before_batchnorm:
        for key in (f"{linear}.bias", f"{batchnorm}.running_mean"):
            expected = torch_state[key].numpy()
            drift = np.abs(network.state_dict()[key] - expected).max()
            # Plus the 1e-10 relative every other array gets, for the rounding of the
            # batch means that enter the running means.
            allowed = drift_bound + 1e-10 * np.abs(expected).max()
            assert drift <= allowed, f"{key} drifted {drift:.3g} > {allowed:.3g}"
    _assert_same_state(
        network, torch_network,
        skip={f"{i}.bias" for i, _ in linear_before_batchnorm}
        | {f"{j}.running_mean" for _, j in linear_before_batchnorm},
    )
    assert_close(network(x), torch_network(as_tensor(x)), np.float64,
                 f"IMSAT training-mode output after {N_STEPS} steps")


def test_dec_training_steps_match_torch():
    """Encoder and centers trained on KL(P || Q) with Adam; P from the whole data set each step."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((40, 8))
    batches = [rng.choice(40, size=10, replace=False) for _ in range(N_STEPS)]
    # The estimator's own networks, optimizer and self-training step.
    dec = DEC(n_clusters=4, hidden_dims=(12,), latent_dim=3, alpha=1.0, lr=0.01, dtype="float64")
    model = dec._build_model(8, np.random.default_rng(0))
    encoder = model["encoder"]
    model["centers"] = nn.Parameter(encoder(x[:4]))
    torch_encoder = load_into_torch(torch.nn.Sequential(
        torch.nn.Linear(8, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3)
    ).double(), encoder)
    torch_centers = torch.nn.Parameter(as_tensor(model["centers"].data))
    optimizer = next(stage for stage in dec._stages(40) if stage.name == "cluster").optimizer(model)
    torch_optimizer = torch.optim.Adam([*torch_encoder.parameters(), torch_centers], lr=dec.lr)

    for batch in batches:
        target = target_distribution(dec._soft_assignment_of(model, x))
        kl, _ = dec._self_training_step(model, optimizer, x[batch], target[batch])

        with torch.no_grad():
            torch_target = torch_target_distribution(
                torch_student_t(torch_encoder(as_tensor(x)), torch_centers, dec.alpha)
            )
        torch_optimizer.zero_grad()
        q_tensor = torch_student_t(torch_encoder(as_tensor(x[batch])), torch_centers, dec.alpha)
        loss_tensor = F.kl_div(torch.log(q_tensor), torch_target[batch], reduction="batchmean")
        loss_tensor.backward()
        torch_optimizer.step()
        assert_close(kl, loss_tensor, np.float64, "DEC step loss")
    _assert_same_state(encoder, torch_encoder)
    assert_close(model["centers"].data, torch_centers, np.float64,
                 f"centers after {N_STEPS} steps")
