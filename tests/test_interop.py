import subprocess
import sys

import numpy as np
import pytest

from npclust import nn
from npclust.interop import from_torch, to_torch


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def every_layer(dtype=np.float32):
    """A nested Sequential holding every layer of npclust.nn, with non-default settings."""
    network = nn.Sequential(
        nn.Linear(6, 8, rng=0),
        nn.BatchNorm1d(8, eps=1e-3, momentum=0.2),
        nn.ReLU(inplace=True),
        nn.Sequential(
            nn.Linear(8, 8, bias=False, rng=1),
            nn.BatchNorm1d(8, momentum=None, affine=False),
            nn.LeakyReLU(0.3),
            nn.Dropout(0.25, rng=0),
        ),
        nn.Linear(8, 8, rng=2),
        nn.BatchNorm1d(8, track_running_stats=False),
        nn.ELU(0.5),
        nn.Sigmoid(),
        nn.Tanh(),
        nn.Softplus(beta=2.0, threshold=5.0),
        nn.Identity(),
        nn.Linear(8, 4, rng=3),
        nn.Softmax(dim=1),
        nn.LogSoftmax(dim=0),
    ).to(dtype)
    # Train the running statistics away from their initial values, then mix modes.
    network(np.random.default_rng(0).standard_normal((16, 6)).astype(dtype))
    network[1].weight.data[...] = np.linspace(0.5, 2.0, 8)
    network[3].eval()
    network[4].weight.requires_grad = False
    return network


def _layer_settings(module):
    """Type, hyper-parameters, mode and requires_grad flags of every layer, for comparison."""
    settings = []
    for sub in module.modules():
        public = {
            name: value for name, value in vars(sub).items()
            if not name.startswith("_") and name != "rng"
            and not isinstance(value, (nn.Module, nn.Parameter, np.ndarray))
        }
        flags = [parameter.requires_grad for _, parameter in sub.named_parameters()]
        settings.append((type(sub).__name__, public, flags))
    return settings


def _assert_same_state(state, other):
    assert list(state) == list(other)
    for key, value in state.items():
        assert value.dtype == other[key].dtype, key
        np.testing.assert_array_equal(value, other[key], err_msg=key)


def _torch_state(torch_module):
    return {key: value.numpy() for key, value in torch_module.state_dict().items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_exact(torch, dtype):
    network = every_layer(dtype)
    back = from_torch(to_torch(network))
    _assert_same_state(network.state_dict(), back.state_dict())
    assert _layer_settings(back) == _layer_settings(network)
    x = np.random.default_rng(1).standard_normal((5, 6)).astype(dtype)
    network.eval()
    back.eval()
    np.testing.assert_array_equal(back(x), network(x))


def test_to_torch_builds_equivalent_module(torch):
    network = every_layer(np.float64)
    torch_network = to_torch(network)
    _assert_same_state(network.state_dict(), _torch_state(torch_network))
    assert [type(m).__name__ for m in torch_network.modules()] == [
        type(m).__name__ for m in network.modules()
    ]
    assert [m.training for m in torch_network.modules()] == [m.training for m in network.modules()]
    assert not torch_network[4].weight.requires_grad and torch_network[4].bias.requires_grad
    assert torch_network[3][3].p == 0.25 and torch_network[2].inplace
    assert torch_network[1].eps == 1e-3 and torch_network[1].momentum == 0.2
    assert torch_network[3][1].momentum is None and not torch_network[3][1].affine
    assert torch_network[9].beta == 2.0 and torch_network[9].threshold == 5.0

    # The whole network in training mode (its Dropout is in eval mode) and in eval mode.
    x = np.random.default_rng(2).standard_normal((7, 6))
    for training in (True, False):
        network.train(training)
        network[3].eval()
        torch_network.train(training)
        torch_network[3].eval()
        y = network(x.copy())
        np.testing.assert_allclose(torch_network(torch.from_numpy(x)).detach().numpy(), y,
                                   rtol=1e-12, atol=1e-14)
    _assert_close_state(network.state_dict(), _torch_state(torch_network))


def _assert_close_state(state, other):
    for key, value in state.items():
        np.testing.assert_allclose(other[key], value, rtol=1e-12, atol=1e-14, err_msg=key)


def test_batchnorm_without_tracking_keeps_npclust_meaning(torch):
    """Batch statistics in training mode without updates; running statistics in eval mode."""
    layer = nn.BatchNorm1d(3, track_running_stats=False).to(np.float64)
    layer.running_mean[...] = [1.0, -2.0, 0.5]
    torch_layer = to_torch(layer)
    assert torch_layer.track_running_stats is False and torch_layer.running_mean is not None
    x = np.random.default_rng(3).standard_normal((6, 3))
    for training in (True, False):
        layer.train(training)
        torch_layer.train(training)
        np.testing.assert_allclose(torch_layer(torch.from_numpy(x)).detach().numpy(),
                                   layer(x), rtol=1e-12)
    _assert_same_state(layer.state_dict(), _torch_state(torch_layer))


def test_to_torch_dtype_argument(torch):
    network = nn.Sequential(nn.Linear(3, 2, rng=0), nn.BatchNorm1d(2))
    for dtype in (torch.float64, np.float64, "float64"):
        converted = to_torch(network, dtype=dtype)
        assert all(p.dtype == torch.float64 for p in converted.parameters())
        assert converted[1].running_var.dtype == torch.float64
        assert converted[1].num_batches_tracked.dtype == torch.int64
        np.testing.assert_array_equal(converted[0].weight.detach().numpy(),
                                      network[0].weight.data.astype(np.float64))
    assert to_torch(network)[0].weight.dtype == torch.float32
    for bad in (np.int32, torch.bfloat16, "not a dtype"):
        with pytest.raises(TypeError, match="dtype"):
            to_torch(network, dtype=bad)


def test_converted_modules_do_not_share_memory(torch):
    network = nn.Sequential(nn.Linear(3, 2, rng=0)).flatten_parameters()
    torch_network = to_torch(network)
    network[0].weight.data[...] = 7.0
    assert not torch.any(torch_network[0].weight == 7.0)
    back = from_torch(torch_network)
    with torch.no_grad():
        torch_network[0].weight.fill_(5.0)
    assert not np.any(back[0].weight.data == 5.0)


def test_state_dict_loads_into_torch_sequential(torch):
    network = nn.Sequential(
        nn.Linear(5, 6, rng=0), nn.BatchNorm1d(6), nn.ReLU(),
        nn.Linear(6, 6, rng=1), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3, rng=2),
    )
    x = np.random.default_rng(4).standard_normal((10, 5)).astype(np.float32)
    network(x)
    network.eval()
    torch_network = torch.nn.Sequential(
        torch.nn.Linear(5, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(),
        torch.nn.Linear(6, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 3),
    ).eval()
    result = torch_network.load_state_dict(
        {key: torch.from_numpy(value) for key, value in network.state_dict().items()}
    )
    assert not result.missing_keys and not result.unexpected_keys
    np.testing.assert_allclose(torch_network(torch.from_numpy(x)).detach().numpy(), network(x),
                               rtol=1e-5, atol=1e-6)


def test_from_torch_then_back_reproduces_torch_module(torch):
    torch.manual_seed(0)
    torch_network = torch.nn.Sequential(
        torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.ELU(0.3),
        torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(5, 2)),
        torch.nn.LogSoftmax(dim=1),
    ).double()
    torch_network(torch.randn(8, 4, dtype=torch.float64))  # move the running statistics
    torch_network[3].eval()
    network = from_torch(torch_network)
    assert network[0].weight.dtype == np.float64 and network.dtype == np.float64
    assert network[2].alpha == 0.3 and network[3][0].p == 0.1
    assert [m.training for m in network.modules()] == [m.training for m in torch_network.modules()]
    again = to_torch(network)
    _assert_same_state(_torch_state(torch_network), _torch_state(again))
    assert repr(again) == repr(torch_network)


UNSUPPORTED_TORCH_LAYERS = {
    "GELU": lambda t: t.nn.GELU(),
    "Conv1d": lambda t: t.nn.Conv1d(3, 3, 1),
    "BatchNorm2d": lambda t: t.nn.BatchNorm2d(3),
    # A subclass may override forward, so only exact types convert.
    "LinearSubclass": lambda t: type("LinearSubclass", (t.nn.Linear,), {})(3, 3),
}


@pytest.mark.parametrize("layer_name", sorted(UNSUPPORTED_TORCH_LAYERS))
def test_from_torch_names_unsupported_layer(torch, layer_name):
    layer = UNSUPPORTED_TORCH_LAYERS[layer_name](torch)
    nested = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Sequential(layer))
    with pytest.raises(TypeError, match=f"cannot convert torch layer .*{layer_name}"):
        from_torch(nested)


@pytest.mark.parametrize(
    "make_layer, message",
    [
        (lambda t: t.nn.BatchNorm1d(3, track_running_stats=False), "track_running_stats=False"),
        (lambda t: t.nn.BatchNorm1d(3, bias=False), "bias=False"),
        (lambda t: t.nn.Softmax(), "dim=None"),
        (lambda t: t.nn.LogSoftmax(), "dim=None"),
    ],
    ids=["bn_no_running_stats", "bn_no_bias", "softmax_implicit_dim", "log_softmax_implicit_dim"],
)
def test_from_torch_rejects_configurations_npclust_cannot_reproduce(torch, make_layer, message):
    with pytest.raises(ValueError, match=message):
        from_torch(make_layer(torch))


def test_bad_arguments_raise_type_error(torch):
    class Custom(nn.Module):
        pass

    with pytest.raises(TypeError, match="cannot convert Custom to torch"):
        to_torch(nn.Sequential(nn.ReLU(), Custom()))
    with pytest.raises(TypeError, match="npclust.nn.Module"):
        to_torch(torch.nn.ReLU())
    with pytest.raises(TypeError, match="torch.nn.Module"):
        from_torch(nn.ReLU())
    with pytest.raises(TypeError, match="bfloat16"):
        from_torch(torch.nn.Linear(2, 2, dtype=torch.bfloat16))


def test_clear_import_error_without_torch(monkeypatch):
    # A None entry in sys.modules makes ``import torch`` raise ImportError.
    monkeypatch.setitem(sys.modules, "torch", None)
    for convert in (to_torch, from_torch):
        with pytest.raises(ImportError, match=r"install npclust\[torch\]"):
            convert(nn.ReLU())


def test_module_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; import npclust.interop; "
        "assert 'torch' not in {m for m in sys.modules if sys.modules[m] is not None}"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
