"""Port-reference vectors: complete, reproducible, and right (finite differences, torch)."""

import numpy as np
import pytest

from npclust.cli import main
from npclust.cluster import DEC, IDEC, IMSAT, KMeans
from npclust.cluster.port_vectors import compute_port_vectors, export_port_vectors
from npclust.datasets import make_blobs
from npclust.files.archive import FORMAT_VERSION, read_archive
from npclust.gradcheck import numerical_gradient

MODELS = {
    "imsat": lambda: IMSAT(n_clusters=3, hidden_dims=(12, 8), epochs=3, batch_size=40,
                           n_neighbors=5, random_state=0),
    "dec": lambda: DEC(n_clusters=3, hidden_dims=(12,), latent_dim=2, pretrain_epochs=3,
                       max_iter=20, update_interval=10, kmeans_n_init=2, random_state=0),
    "idec": lambda: IDEC(n_clusters=3, hidden_dims=(12,), latent_dim=2, pretrain_epochs=3,
                         max_iter=20, update_interval=10, kmeans_n_init=2, random_state=0),
}


@pytest.fixture(scope="module")
def fitted():
    X, _ = make_blobs(n_samples=120, n_features=4, centers=3, random_state=2)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return {name: factory().fit(X) for name, factory in MODELS.items()}


@pytest.mark.parametrize("name", MODELS)
def test_reference_is_complete_and_reproducible(fitted, name):
    model = fitted[name]
    header, first = compute_port_vectors(model, n_samples=6, seed=3)
    second_header, second = compute_port_vectors(model, n_samples=6, seed=3)
    assert first.keys() == second.keys() and header == second_header
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert header["class"] == type(model).__name__
    assert first["input"].shape == (6, 4) and first["grad/input"].shape == (6, 4)
    for key in first:
        if key.startswith("param/") and "running" not in key and "num_batches" not in key:
            assert first["grad/" + key[len("param/"):]].shape == first[key].shape


@pytest.mark.parametrize("name", MODELS)
def test_model_is_left_untouched(fitted, name):
    model = fitted[name]
    modules = [getattr(model, attr) for attr in model._fitted_modules]
    before = [module.state_dict() for module in modules]
    compute_port_vectors(model)
    for module, state in zip(modules, before):
        for key, value in module.state_dict().items():
            np.testing.assert_array_equal(value, state[key])


@pytest.mark.parametrize("name", MODELS)
def test_input_gradient_matches_finite_differences(fitted, name, monkeypatch):
    from npclust.cluster import port_vectors as reference

    model = fitted[name]
    _, arrays = compute_port_vectors(model, n_samples=5, seed=1)
    x = arrays["input"]

    if "output/target" in arrays:
        # DEC's target P is held fixed in the loss.
        monkeypatch.setattr(reference, "target_distribution", lambda q: arrays["output/target"])

    def loss_at(candidate):
        monkeypatch.setattr(reference, "_input_batch", lambda *args: candidate)
        header, _ = compute_port_vectors(model, n_samples=5)
        return header["loss_value"]

    numerical = numerical_gradient(loss_at, x.copy())
    np.testing.assert_allclose(arrays["grad/input"], numerical, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", ["imsat", "idec"])
def test_reference_matches_torch_autograd(fitted, name):
    torch = pytest.importorskip("torch")
    from npclust.interop import to_torch

    model = fitted[name]
    header, arrays = compute_port_vectors(model, n_samples=8, seed=0)
    x = torch.tensor(arrays["input"], requires_grad=True)
    if name == "imsat":
        network = to_torch(model.network_, dtype=torch.float64).train()
        modules = {"network": network}
        logits = network(x)
        p, log_p = torch.softmax(logits, 1), torch.log_softmax(logits, 1)
        mean_p = p.mean(0)
        loss = -(p * log_p).sum(1).mean() + model.mu * (mean_p * torch.log(mean_p)).sum()
    else:
        encoder = to_torch(model.encoder_, dtype=torch.float64).train()
        decoder = to_torch(model.decoder_, dtype=torch.float64).train()
        modules = {"encoder": encoder, "decoder": decoder}
        centers = torch.tensor(arrays["param/cluster_centers"], requires_grad=True)
        z = encoder(x)
        q = 1.0 / (1.0 + ((z[:, None, :] - centers[None]) ** 2).sum(2) / model.alpha)
        q = q ** ((model.alpha + 1) / 2)
        q = q / q.sum(1, keepdim=True)
        p = torch.tensor(arrays["output/target"])
        kl = (p * (torch.log(p) - torch.log(q))).sum() / x.shape[0]
        loss = ((decoder(z) - x) ** 2).mean() + model.gamma * kl
    loss.backward()
    assert header["loss_value"] == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(arrays["grad/input"], x.grad.numpy(), rtol=1e-9, atol=1e-14)
    for module_name, module in modules.items():
        for key, parameter in module.named_parameters():
            np.testing.assert_allclose(arrays[f"grad/{module_name}/{key}"],
                                       parameter.grad.numpy(), rtol=1e-9, atol=1e-14)
    if name == "idec":
        np.testing.assert_allclose(arrays["grad/cluster_centers"], centers.grad.numpy(),
                                   rtol=1e-9, atol=1e-14)


def test_dec_reference_leaves_out_the_unused_decoder(fitted):
    _, arrays = compute_port_vectors(fitted["dec"])
    assert not any(key.startswith("grad/decoder") for key in arrays)


def test_refuses_unsupported_or_unfitted_models(fitted):
    with pytest.raises(TypeError, match="KMeans"):
        compute_port_vectors(KMeans(n_clusters=2).fit(np.random.default_rng(0).random((10, 2))))
    with pytest.raises(ValueError, match="not fitted"):
        compute_port_vectors(IMSAT())
    with pytest.raises(ValueError, match="n_samples"):
        compute_port_vectors(fitted["imsat"], n_samples=1)


def test_export_and_cli(fitted, tmp_path, capsys):
    model_path, out = tmp_path / "m.npz", tmp_path / "ref.npz"
    fitted["idec"].save(model_path)
    header = export_port_vectors(fitted["idec"], tmp_path / "direct.npz", n_samples=4)
    assert header["class"] == "IDEC"
    assert main(["export-reference", str(model_path), "--out", str(out), "--n-samples", "4"]) == 0
    assert "IDEC reference written" in capsys.readouterr().out
    cli_header, from_cli = read_archive(out, "port-reference")
    direct_header, direct = read_archive(tmp_path / "direct.npz", "port-reference")
    assert cli_header == direct_header and cli_header["format_version"] == FORMAT_VERSION
    assert from_cli.keys() == direct.keys()
    for key in direct:
        np.testing.assert_array_equal(from_cli[key], direct[key])
    assert main(["export-reference", str(tmp_path / "missing.npz"), "--out", str(out)]) == 2
