"""The PyTorch DDP recipes of docs/porting.md §4, run as written on 2 CPU processes (gloo).

The code blocks are taken from the Markdown file itself, so the recipes cannot rot
unnoticed: DEC with a globally normalised target and IMSAT with a globally averaged
marginal must reproduce single-process npclust training on the union of the ranks'
batches.
"""

import re
import socket
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
distributed = pytest.importorskip("torch.distributed")
if not distributed.is_available() or not distributed.is_gloo_available():
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

from npclust import nn  # noqa: E402
from npclust.cluster import DEC  # noqa: E402
from npclust.losses import mutual_information, target_distribution  # noqa: E402
from npclust.optim import Adam  # noqa: E402

PORTING = Path(__file__).resolve().parent.parent / "docs" / "porting.md"
RECIPES = ("def student_t", "def target_distribution_ddp", "class DECModel",
           "def mutual_information_ddp")
N_STEPS, ROWS_PER_RANK, LR = 5, 5, 0.01


def recipe_code():
    """The documented code blocks that define the recipes, joined."""
    blocks = re.findall(r"```python\n(.*?)```", PORTING.read_text(), re.S)
    chosen = [block for block in blocks if any(name in block for name in RECIPES)]
    assert len(chosen) == len(RECIPES), "the recipes in docs/porting.md moved; update RECIPES"
    return "\n".join(chosen)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _batches(rank, n_rows):
    """Rank ``rank``'s rows of each step: a fixed shard (every other row), in order."""
    shard = np.arange(rank, n_rows, 2)
    return [shard[(step * ROWS_PER_RANK) % len(shard):][:ROWS_PER_RANK] for step in range(N_STEPS)]


def _worker(rank, port, cases, out):
    """Train every case of ``cases`` (method -> arrays) as rank ``rank`` of 2; rank 0 saves."""
    distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                   world_size=2)
    try:
        recipes = {}
        exec(recipe_code(), recipes)  # the documentation's own code
        results = {}
        for method, arrays in cases.items():
            state = _train_rank(rank, method, arrays, recipes)
            results.update({f"{method}/{key}": value for key, value in state.items()})
        if rank == 0:
            np.savez(out, **results)
    finally:
        distributed.destroy_process_group()


def _train_rank(rank, method, arrays, recipes):
    x = torch.from_numpy(arrays["x"])
    network = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 12), torch.nn.ReLU(),
                                  torch.nn.Linear(12, arrays["out"])).double()
    network.load_state_dict({key: torch.from_numpy(value) for key, value in arrays.items()
                             if key[0].isdigit()})
    if method == "dec":
        model = recipes["DECModel"](network, torch.from_numpy(arrays["centers"]))
    else:
        model = network
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=LR)
    shard = np.arange(rank, x.shape[0], 2)
    for batch in _batches(rank, x.shape[0]):
        optimizer.zero_grad()
        if method == "dec":
            with torch.no_grad():
                p_shard = recipes["target_distribution_ddp"](model(x[torch.from_numpy(shard)]))
            rows = torch.from_numpy(np.searchsorted(shard, batch))
            q = ddp(x[torch.from_numpy(batch)])
            loss = torch.nn.functional.kl_div(q.log(), p_shard[rows], reduction="batchmean")
        else:
            loss = recipes["mutual_information_ddp"](ddp(x[torch.from_numpy(batch)]))
        loss.backward()
        optimizer.step()
    return {key: value.detach().numpy() for key, value in model.state_dict().items()}


def _single_process_dec():
    """npclust's DEC trained on the union of the ranks' batches, and the starting arrays."""
    x = np.random.default_rng(12).standard_normal((40, 8))
    dec = DEC(n_clusters=4, hidden_dims=(12,), latent_dim=3, lr=LR, dtype="float64")
    model = dec._build_model(8, np.random.default_rng(0))
    model["centers"] = nn.Parameter(model["encoder"](x[:4]))
    arrays = {"x": x, "out": 3, "centers": model["centers"].data.copy(),
              **model["encoder"].state_dict()}
    optimizer = next(stage for stage in dec._stages(40) if stage.name == "cluster").optimizer(model)
    for batch in _union_of_batches(40):
        target = target_distribution(dec._soft_assignment_of(model, x))
        dec._self_training_step(model, optimizer, x[batch], target[batch])
    return model, arrays


def _single_process_imsat():
    """An IMSAT network without BatchNorm trained on the union of the batches, and its start."""
    x = np.random.default_rng(11).standard_normal((40, 10))
    network = nn.Sequential(nn.Linear(10, 12, rng=0), nn.ReLU(), nn.Linear(12, 4, rng=1))
    network.to(np.float64)
    arrays = {"x": x, "out": 4, **network.state_dict()}
    optimizer = Adam(network.parameters(), lr=LR)
    for batch in _union_of_batches(40):
        network.zero_grad()
        _, dlogits = mutual_information(network(x[batch]), mu=4.0)
        network.backward(dlogits, input_grad=False)
        optimizer.step()
    return network, arrays


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Both recipes trained by two ranks in one process group, and single-process npclust."""
    dec_model, dec_arrays = _single_process_dec()
    imsat_network, imsat_arrays = _single_process_imsat()
    out = tmp_path_factory.mktemp("ddp") / "rank0.npz"
    torch.multiprocessing.spawn(
        _worker, args=(_free_port(), {"dec": dec_arrays, "imsat": imsat_arrays}, str(out)),
        nprocs=2, join=True)
    with np.load(out) as result:
        return {"dec": dec_model, "imsat": imsat_network, "ranks": dict(result)}


def _union_of_batches(n_rows):
    ranks = [_batches(rank, n_rows) for rank in range(2)]
    return [np.concatenate([ranks[0][step], ranks[1][step]]) for step in range(N_STEPS)]


def test_dec_ddp_recipe_reproduces_single_process_training(trained):
    model, ranks = trained["dec"], trained["ranks"]
    for key, value in model["encoder"].state_dict().items():
        np.testing.assert_allclose(ranks[f"dec/encoder.{key}"], value, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(ranks["dec/centers"], model["centers"].data, rtol=1e-10, atol=1e-13)


def test_imsat_ddp_recipe_reproduces_single_process_training(trained):
    network, ranks = trained["imsat"], trained["ranks"]
    for key, value in network.state_dict().items():
        np.testing.assert_allclose(ranks[f"imsat/{key}"], value, rtol=1e-10, atol=1e-13)
