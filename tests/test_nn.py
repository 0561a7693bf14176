import copy
import warnings

import numpy as np
import pytest

from npclust import nn
from npclust.gradcheck import check_module


def _float64(module):
    return module.to(np.float64)


LAYER_FACTORIES = {
    "linear": lambda: nn.Linear(5, 3, rng=0),
    "linear_no_bias": lambda: nn.Linear(5, 3, bias=False, rng=1),
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": lambda: nn.ELU(0.7),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softplus": lambda: nn.Softplus(beta=2.0, threshold=3.0),
    "identity": nn.Identity,
    "softmax": nn.Softmax,
    "log_softmax": nn.LogSoftmax,
    "softmax_dim0": lambda: nn.Softmax(dim=0),
    "batchnorm": lambda: nn.BatchNorm1d(5),
    "batchnorm_no_affine": lambda: nn.BatchNorm1d(5, affine=False),
    "dropout_eval": lambda: nn.Dropout(0.3, rng=0).eval(),
    "mlp": lambda: nn.Sequential(
        nn.Linear(5, 6, rng=2), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3, rng=3), nn.LogSoftmax()
    ),
}


def _random_affine_batchnorm(module, rng):
    """Non-trivial scale and shift, so their gradients are exercised."""
    for sub in module.modules():
        if isinstance(sub, nn.BatchNorm1d) and sub.affine:
            sub.weight.data[...] = rng.uniform(0.5, 2.0, sub.num_features)
            sub.bias.data[...] = rng.normal(size=sub.num_features)


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
@pytest.mark.parametrize("n_samples", [2, 7])
def test_module_gradients_match_finite_differences(name, n_samples):
    rng = np.random.default_rng(n_samples)
    module = _float64(LAYER_FACTORIES[name]())
    _random_affine_batchnorm(module, rng)
    # Keep inputs away from activation kinks (|x| >= 0.05) so central differences
    # with eps = 1e-6 never straddle one.
    x = rng.normal(size=(n_samples, 5))
    x = np.where(x < 0, -1.0, 1.0) * np.maximum(np.abs(x), 0.05)
    results = check_module(module, x, rng=rng)
    assert results, "check_module returned no results"
    failed = [r for r in results if not r.passed]
    assert not failed, failed


@pytest.mark.parametrize("scale", [30.0, 1e3])
def test_softmax_modules_with_large_logits(scale):
    rng = np.random.default_rng(0)
    x = scale * rng.normal(size=(4, 5))
    x[0] = x[0, 0]  # a row of ties
    for module in (nn.Softmax(), nn.LogSoftmax()):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = module(x)
            dx = module.backward(rng.normal(size=x.shape))
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    if scale == 30.0:
        results = check_module(nn.LogSoftmax(), x, rng=rng)
        assert all(r.passed for r in results), results


def test_batchnorm_eval_mode_gradient_uses_running_statistics():
    rng = np.random.default_rng(1)
    bn = _float64(nn.BatchNorm1d(4))
    for _ in range(3):
        bn(rng.normal(2.0, 3.0, size=(8, 4)))
    bn.eval()
    x = rng.normal(size=(3, 4))
    results = check_module(bn, x, rng=rng)
    assert all(r.passed for r in results), results
    expected = (x - bn.running_mean) / np.sqrt(bn.running_var + bn.eps)
    np.testing.assert_allclose(bn(x), expected, rtol=1e-12)


def test_batchnorm_running_statistics_follow_pytorch_rule():
    rng = np.random.default_rng(2)
    x = rng.normal(1.0, 2.0, size=(6, 3))
    bn = _float64(nn.BatchNorm1d(3, momentum=0.1))
    bn(x)
    np.testing.assert_allclose(bn.running_mean, 0.1 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-12)
    assert int(bn.num_batches_tracked) == 1

    cumulative = _float64(nn.BatchNorm1d(3, momentum=None))
    batches = [rng.normal(size=(5, 3)) for _ in range(4)]
    for batch in batches:
        cumulative(batch)
    np.testing.assert_allclose(
        cumulative.running_mean, np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-12
    )


def test_batchnorm_without_tracking_leaves_running_statistics():
    rng = np.random.default_rng(3)
    bn = _float64(nn.BatchNorm1d(3))
    bn.track_running_stats = False
    x = rng.normal(5.0, 2.0, size=(6, 3))
    y = bn(x)
    np.testing.assert_array_equal(bn.running_mean, 0.0)
    np.testing.assert_array_equal(bn.running_var, 1.0)
    assert int(bn.num_batches_tracked) == 0
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + bn.eps), rtol=1e-12)


def test_batchnorm_normalises_with_biased_variance_and_rejects_single_row():
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    bn = _float64(nn.BatchNorm1d(2, eps=0.0 + 1e-12))
    y = bn(x)
    np.testing.assert_allclose(y, [[-1.0, -1.0], [1.0, 1.0]], rtol=1e-9)
    with pytest.raises(ValueError, match="more than 1 sample"):
        bn(x[:1])


def test_batchnorm_constant_feature_gives_finite_output_and_gradient():
    x = np.ones((5, 2))
    x[:, 1] = np.arange(5.0)
    bn = _float64(nn.BatchNorm1d(2))
    y = bn(x)
    dx = bn.backward(np.ones_like(y))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_array_equal(y[:, 0], 0.0)


def test_dropout_train_mode_masks_and_backward_uses_same_mask():
    x = np.ones((400, 50))
    dropout = nn.Dropout(0.25, rng=3)
    y = dropout(x)
    dropped = np.mean(y == 0)
    assert 0.22 < dropped < 0.28
    np.testing.assert_allclose(y[y != 0], 1 / 0.75)
    dy = np.random.default_rng(0).normal(size=x.shape)
    np.testing.assert_array_equal(dropout.backward(dy), dy * (y / x))
    assert np.all(nn.Dropout(1.0, rng=0)(x) == 0)
    with pytest.raises(ValueError, match="dropout probability"):
        nn.Dropout(1.5)


def test_linear_layout_and_pytorch_default_initialisation():
    layer = nn.Linear(400, 30, rng=0)
    assert layer.weight.shape == (30, 400) and layer.bias.shape == (30,)
    assert layer.weight.dtype == np.float32
    bound = 1 / np.sqrt(400)
    assert np.abs(layer.weight.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.95 * bound
    x = np.random.default_rng(0).normal(size=(7, 400)).astype(np.float32)
    np.testing.assert_allclose(layer(x), x @ layer.weight.data.T + layer.bias.data, rtol=1e-6)
    np.testing.assert_array_equal(nn.Linear(4, 2, rng=5).weight.data, nn.Linear(4, 2, rng=5).weight.data)


def test_linear_rejects_bad_input_with_clear_errors():
    layer = nn.Linear(4, 2, rng=0)
    with pytest.raises(ValueError, match=r"shape \(n_samples, 4\)"):
        layer(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(n_samples, 4\)"):
        layer(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="float32 parameters but got float64"):
        layer(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="positive integer"):
        nn.Linear(0, 3)


def test_backward_accumulates_and_input_grad_false_skips_input():
    rng = np.random.default_rng(4)
    net = _float64(nn.Sequential(nn.Linear(3, 4, rng=0), nn.ReLU(), nn.Linear(4, 2, rng=1)))
    x, dy = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    net(x)
    dx = net.backward(dy)
    first = [p.grad.copy() for p in net.parameters()]
    net(x)
    assert net.backward(dy, input_grad=False) is None
    for parameter, grad in zip(net.parameters(), first):
        np.testing.assert_allclose(parameter.grad, 2 * grad, rtol=1e-12)
    assert dx.shape == x.shape
    net.zero_grad()
    assert all(np.all(p.grad == 0) for p in net.parameters())


def test_state_dict_keys_are_pytorch_names_and_round_trip():
    net = nn.Sequential(nn.Linear(3, 4, rng=0), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2, rng=1))
    keys = list(net.state_dict())
    assert keys == [
        "0.weight", "0.bias",
        "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "3.weight", "3.bias",
    ]
    net(np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32))
    other = nn.Sequential(nn.Linear(3, 4, rng=7), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2, rng=8))
    other.load_state_dict(net.state_dict())
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)
    state = net.state_dict()
    del state["0.bias"]
    with pytest.raises(KeyError, match="missing keys \\['0.bias'\\]"):
        other.load_state_dict(state)
    state = net.state_dict()
    state["0.weight"] = np.zeros((4, 4))
    with pytest.raises(ValueError, match="shape mismatch for '0.weight'"):
        other.load_state_dict(state)


def test_flatten_parameters_makes_views_into_one_buffer():
    net = nn.Sequential(nn.Linear(3, 4, rng=0), nn.BatchNorm1d(4), nn.Linear(4, 2, rng=1))
    before = net.state_dict()
    net.flatten_parameters()
    parameters = net.parameters()
    base = parameters[0].data.base
    assert base is not None and base.ndim == 1
    assert all(p.data.base is base for p in parameters)
    assert base.size == sum(p.data.size for p in parameters)
    for key, value in before.items():
        np.testing.assert_array_equal(net.state_dict()[key], value)
    net.load_state_dict(before)
    assert all(p.data.base is base for p in parameters)


def test_flatten_parameters_records_the_buffer_and_copies_forget_it():
    import pickle

    net = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Linear(4, 2, rng=1)).flatten_parameters()
    parameters = net.parameters()
    buffer = parameters[0].flat[0]
    assert isinstance(buffer, nn.FlatBuffer)
    assert [p.flat for p in parameters] == [(buffer, 0), (buffer, 12), (buffer, 16), (buffer, 24)]
    assert all(p.data.base is buffer.data and p.grad.base is buffer.grad for p in parameters)
    # A copy's views are separate arrays: a record pointing at a buffer would make an
    # optimizer update an array the copy does not use.
    for duplicate in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert all(p.flat is None for p in duplicate.parameters())
    parameters[0].grad = np.zeros((4, 3), dtype=np.float32)  # rebound: no longer a view
    assert parameters[0].flat is None and parameters[1].flat == (buffer, 12)
    net.to(np.float64)
    assert all(p.flat is None for p in net.parameters())


def test_to_changes_dtype_of_parameters_and_float_buffers():
    net = nn.Sequential(nn.Linear(3, 4, rng=0), nn.BatchNorm1d(4)).to(np.float64)
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in net.parameters())
    assert net[1].running_var.dtype == np.float64
    assert net[1].num_batches_tracked.dtype == np.int64
    assert net.dtype == np.float64
    with pytest.raises(TypeError, match="floating-point"):
        net.to(np.int32)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "elu", "softplus", "relu", "leaky_relu"])
def test_activations_finite_for_extreme_inputs(name):
    x = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], dtype=np.float32)
    module = nn.activation(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = module(x)
        dx = module.backward(np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError, match="valid names are .*relu"):
        nn.activation("swish")


def test_relu_inplace_overwrites_input():
    x = np.array([[-1.0, 2.0]])
    y = nn.ReLU(inplace=True)(x)
    assert y is x and x[0, 0] == 0


def test_requires_grad_off_leaves_gradients_and_still_returns_input_gradient():
    rng = np.random.default_rng(5)
    net = _float64(nn.Sequential(nn.Linear(3, 4, rng=0), nn.BatchNorm1d(4), nn.Linear(4, 2, rng=1)))
    x, dy = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    net(x)
    expected_dx = net.backward(dy)
    net.zero_grad()
    net.requires_grad_(False)
    net(x)
    np.testing.assert_allclose(net.backward(dy), expected_dx, rtol=1e-12)
    assert all(np.all(p.grad == 0) for p in net.parameters())
    net.requires_grad_(True)
    net(x)
    net.backward(dy)
    assert any(np.any(p.grad != 0) for p in net.parameters())


def test_elu_gradient_accurate_for_very_negative_inputs():
    x = np.array([[-40.0, -20.0, -17.0, -1.0]])
    for dtype in (np.float32, np.float64):
        module = nn.ELU(alpha=1.5)
        module(x.astype(dtype))
        gradient = module.backward(np.ones((1, 4), dtype=dtype))
        np.testing.assert_allclose(gradient, 1.5 * np.exp(x), rtol=1e-6)


def test_pickled_modules_drop_caches_and_still_work():
    import pickle

    network = nn.Sequential(nn.Linear(6, 32, rng=0), nn.BatchNorm1d(32), nn.ReLU(),
                            nn.Linear(32, 3, rng=1))
    x = np.random.default_rng(0).standard_normal((500, 6)).astype(np.float32)
    network(x)
    network.backward(np.ones((500, 3), dtype=np.float32))
    restored = pickle.loads(pickle.dumps(network))
    assert len(pickle.dumps(network)) < 6 * 32 * 4 + 32 * 3 * 4 + 4096
    network.eval()
    restored.eval()
    np.testing.assert_array_equal(restored(x), network(x))
