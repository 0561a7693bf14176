"""npclust.nn.workspace and the other fast paths of npclust.nn against the plain formulas.

In training mode Sequential lends its inner modules' results (npclust.nn.workspace),
so they run on reused buffers; Linear writes weight gradients straight into a lazily
zeroed ``.grad``; BatchNorm and ReLU run fused passes. These tests pin down that none
of it changes a result or aliases an array a caller holds.
"""

import copy
import tracemalloc

import numpy as np
import pytest

from npclust import nn
from npclust.functional import log_softmax, log_softmax_backward, softmax
from npclust.losses import kl_div, mutual_information
from npclust.nn.workspace import lent
from npclust.optim import Adam


def _imsat_like(dtype=np.float64, affine=True, inplace=True):
    rng = np.random.default_rng(0)
    net = nn.Sequential(
        nn.Linear(12, 16, rng=rng, dtype=dtype), nn.BatchNorm1d(16, affine=affine, dtype=dtype),
        nn.ReLU(inplace=inplace),
        nn.Linear(16, 16, rng=rng, dtype=dtype), nn.BatchNorm1d(16, affine=affine, dtype=dtype),
        nn.ReLU(inplace=inplace),
        nn.Linear(16, 4, rng=rng, dtype=dtype),
    )
    for module in net.modules():
        if isinstance(module, nn.BatchNorm1d) and module.affine:
            module.weight.data[...] = rng.uniform(0.5, 2.0, module.num_features)
            module.bias.data[...] = rng.normal(size=module.num_features)
    return net


def _plain_forward(net, x):
    """The chain through each module's public forward: fresh arrays throughout."""
    for module in net:
        x = module.forward(x)
    return x


def _plain_backward(net, dy, input_grad=True):
    modules = list(net)
    for module in reversed(modules[1:]):
        dy = module.backward(dy)
    return modules[0].backward(dy, input_grad=input_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine,inplace", [(True, True), (False, True), (True, False)])
def test_sequential_with_reused_buffers_equals_plain_chain(dtype, affine, inplace):
    rng = np.random.default_rng(1)
    fast = _imsat_like(dtype, affine, inplace)
    plain = copy.deepcopy(fast)
    for step in range(3):  # later steps run on the reused buffers
        x = rng.normal(size=(9, 12)).astype(dtype)
        dy = rng.normal(size=(9, 4)).astype(dtype)
        y_fast, y_plain = fast(x), _plain_forward(plain, x)
        np.testing.assert_array_equal(y_fast, y_plain)
        dx_fast, dx_plain = fast.backward(dy), _plain_backward(plain, dy)
        np.testing.assert_array_equal(dx_fast, dx_plain)
        for (name, p_fast), (_, p_plain) in zip(fast.named_parameters(), plain.named_parameters()):
            np.testing.assert_array_equal(p_fast.grad, p_plain.grad, err_msg=f"{name}, step {step}")


def test_outputs_and_input_gradients_held_by_the_caller_are_never_overwritten():
    rng = np.random.default_rng(2)
    net = _imsat_like()
    outer = nn.Sequential(net, nn.Linear(4, 3, rng=0, dtype=np.float64))
    x1, x2 = rng.normal(size=(6, 12)), rng.normal(size=(6, 12))
    for model, width in ((net, 4), (outer, 3)):
        y1 = model(x1)
        dx1 = model.backward(np.ones((6, width)))
        kept_y1, kept_dx1 = y1.copy(), dx1.copy()
        y2 = model(x2)
        dx2 = model.backward(np.full((6, width), 2.0))
        np.testing.assert_array_equal(y1, kept_y1)
        np.testing.assert_array_equal(dx1, kept_dx1)
        assert not np.shares_memory(y1, y2) and not np.shares_memory(dx1, dx2)
    # The inner Sequential called on its own still returns fresh arrays.
    z1 = net(x1)
    kept = z1.copy()
    outer(x2)
    net(x2)
    np.testing.assert_array_equal(z1, kept)


def test_vat_sequence_of_passes_matches_fresh_computation():
    """Three forward passes per step, one input-only backward: as IMSAT's VAT does."""
    rng = np.random.default_rng(3)
    fast = _imsat_like()
    plain = copy.deepcopy(fast)
    x = rng.normal(size=(10, 12))
    probe = rng.normal(size=x.shape)
    results = []
    for net, forward, backward in ((fast, fast.forward, fast.backward),
                                   (plain, lambda v: _plain_forward(plain, v),
                                    lambda d, **kw: _plain_backward(plain, d, **kw))):
        net.zero_grad()
        logits = forward(x)
        _, dlogits = mutual_information(logits)
        backward(0.1 * dlogits, input_grad=False)
        target = softmax(logits)
        net.requires_grad_(False)
        log_q = log_softmax(forward(x + probe))
        direction = backward(log_softmax_backward(kl_div(log_q, target)[1], log_q))
        net.requires_grad_(True)
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        log_q = log_softmax(forward(x + 0.5 * direction))
        backward(log_softmax_backward(kl_div(log_q, target)[1], log_q), input_grad=False)
        results.append((logits, direction, [p.grad.copy() for p in net.parameters()]))
    (logits_f, direction_f, grads_f), (logits_p, direction_p, grads_p) = results
    np.testing.assert_array_equal(logits_f, logits_p)
    np.testing.assert_array_equal(direction_f, direction_p)
    for got, want in zip(grads_f, grads_p):
        np.testing.assert_array_equal(got, want)


def test_evaluation_mode_keeps_no_batch_sized_buffers():
    net = _imsat_like().eval()
    net(np.zeros((50, 12)))
    for module in net.modules():
        for array in module.workspace.arrays().values():
            assert array.shape[0] != 50, f"{type(module).__name__} kept a batch-sized buffer"


def test_training_step_allocates_no_hidden_activations():
    """After warm-up, forward + backward of a fixed-shape batch allocates only small arrays
    (row statistics, the fresh output) — not the 256 x 512 hidden activations."""
    rng = np.random.default_rng(4)
    net = nn.Sequential(
        nn.Linear(64, 512, rng=rng), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
        nn.Linear(512, 512, rng=rng), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
        nn.Linear(512, 4, rng=rng),
    ).flatten_parameters()
    x = rng.random((256, 64)).astype(np.float32)
    dy = rng.random((256, 4)).astype(np.float32)

    def step():
        net.zero_grad()
        net(x)
        net.backward(dy, input_grad=False)

    step()
    tracemalloc.start()
    try:
        step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    activation_bytes = 256 * 512 * 4
    assert peak < activation_bytes / 8, f"a step allocated up to {peak} bytes"


def test_lazy_zero_grad_reads_as_zero_and_backward_writes_or_accumulates():
    rng = np.random.default_rng(5)
    net = _imsat_like().flatten_parameters()
    x, dy = rng.normal(size=(7, 12)), rng.normal(size=(7, 4))
    net(x)
    net.backward(dy)
    once = [p.grad.copy() for p in net.parameters()]
    net.zero_grad()
    assert all(np.all(p.grad == 0) for p in net.parameters())
    net.zero_grad()
    net(x)
    net.backward(dy)  # written straight into .grad
    for p, want in zip(net.parameters(), once):
        np.testing.assert_array_equal(p.grad, want)
    net(x)
    net.backward(dy)  # accumulated
    for p, want in zip(net.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * want, rtol=1e-12)
    # A write through .grad after zero_grad starts from zeros, and backward adds to it.
    net.zero_grad()
    weight = net[0].weight
    weight.grad += 1.0
    net(x)
    net.backward(dy)
    np.testing.assert_allclose(weight.grad, once[0] + 1.0, rtol=1e-12)


def test_optimizer_sees_zeros_for_parameters_left_out_of_backward():
    """A lazily zeroed gradient that no backward wrote must reach the optimizer as zeros."""
    rng = np.random.default_rng(6)
    used = nn.Linear(3, 2, rng=0, dtype=np.float64)
    unused = nn.Linear(3, 2, rng=1, dtype=np.float64)
    net = nn.Sequential(used, unused).flatten_parameters()
    optimizer = Adam(net.parameters(), lr=0.1)
    for parameter in unused.parameters():
        parameter.grad[...] = 5.0  # stale values in the flat buffer
    before = [p.data.copy() for p in unused.parameters()]
    optimizer.zero_grad()
    used(rng.normal(size=(4, 3)))
    used.backward(rng.normal(size=(4, 2)))
    optimizer.step()
    for parameter, old in zip(unused.parameters(), before):
        np.testing.assert_array_equal(parameter.data, old)
        assert np.all(parameter.grad == 0)


def test_batchnorm_without_affine_output_is_not_its_cache():
    """An in-place ReLU after a non-affine BatchNorm must not corrupt what backward reads."""
    rng = np.random.default_rng(7)
    bn = nn.BatchNorm1d(5, affine=False, dtype=np.float64)
    x, dy = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    reference = copy.deepcopy(bn)
    reference.forward(x)
    expected_dx = reference.backward(dy)
    y = bn.forward(x)
    np.maximum(y, 0, out=y)
    np.testing.assert_allclose(bn.backward(dy), expected_dx, rtol=1e-12)


def test_every_module_called_with_lent_results_equals_its_plain_call():
    """Each layer on its own: results written into lent buffers are bit for bit the
    fresh ones, on repeated calls (reused buffers), in both modes."""
    rng = np.random.default_rng(10)
    layers = [nn.Linear(6, 5, rng=rng, dtype=np.float64), nn.BatchNorm1d(6, dtype=np.float64),
              nn.BatchNorm1d(6, affine=False, dtype=np.float64), nn.ReLU(), nn.ReLU(inplace=True)]
    for layer in layers:
        for training in (True, False):
            fast = copy.deepcopy(layer).train(training)
            plain = copy.deepcopy(layer).train(training)
            for _ in range(2):
                x = rng.normal(size=(7, 6))
                with lent(fast):
                    y_fast = fast.forward(x.copy()).copy()
                y_plain = plain.forward(x.copy())
                np.testing.assert_array_equal(y_fast, y_plain)
                dy = rng.normal(size=y_plain.shape)
                with lent(fast):
                    dx_fast = fast.backward(dy).copy()
                np.testing.assert_array_equal(dx_fast, plain.backward(dy))
                for p_fast, p_plain in zip(fast.parameters(), plain.parameters()):
                    np.testing.assert_array_equal(p_fast.grad, p_plain.grad)


def test_lent_results_live_in_the_workspace_and_only_while_lent():
    linear = nn.Linear(3, 2, rng=0, dtype=np.float64)
    x = np.ones((4, 3))
    with lent(linear):
        first = linear(x)
        assert linear(x) is first
    assert linear(x) is not first and linear(x) is not linear(x)
    assert not linear.workspace.results_lent
