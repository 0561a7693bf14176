"""Whole fits: npclust's IMSAT, DEC and IDEC against the same training written in PyTorch.

Each contender fits the same synthetic 10,000 x 784 float32 data (digits-like, fixed
seed) with the same architecture, epochs, batch size, number of steps and
target-update schedule: IMSAT with VAT (its neighbour search included), DEC and IDEC
(denoising pretraining, k-means on the codes, self-training with whole-data target
updates). The PyTorch version is written here the way a straightforward port would
be (torch.cdist + topk for the neighbours, autograd for VAT's power iteration,
scikit-learn's KMeans when installed, else npclust's kmeans, for the initial centers).
Runs alternate npclust / PyTorch, with the same thread count for NumPy's BLAS and
torch; the table gives medians and each fit's split:

* ``neighbours``: IMSAT's k-th neighbour distances (the VAT radii);
* ``kmeans``: k-means on the latent codes (DEC/IDEC);
* ``train``: the mini-batch steps (pretraining and self-training);
* ``passes``: whole-data evaluation passes (targets, objective, labels);
* ``other``: everything else (setup, history, bookkeeping).

The default schedule is shortened (``--scale``) so that a round takes minutes, not an
hour; the proportions are what matters. Needs PyTorch (``npclust[torch]``).

    OPENBLAS_NUM_THREADS=1 python benchmarks/fit_time.py --threads 1 --json fit_time_1t.json
"""

import argparse
import os
import statistics
import sys
import time
from contextlib import contextmanager

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe, environment, synthetic_digits_like, write_json  # noqa: E402

from npclust import lloyd  # noqa: E402
from npclust.cluster import DEC, IDEC, IMSAT, dec, imsat  # noqa: E402

SCHEDULES = {
    # The estimators' defaults, with fewer epochs, restarts and iterations.
    "imsat": dict(epochs=3, n_init=1),
    "dec": dict(pretrain_epochs=2, max_iter=150, update_interval=50, kmeans_n_init=5, tol=0.0),
    "idec": dict(pretrain_epochs=2, max_iter=150, update_interval=50, kmeans_n_init=5, tol=0.0),
}


class Split:
    """Seconds per phase, accumulated by the ``phase`` context manager."""

    def __init__(self):
        self.seconds = {}

    @contextmanager
    def phase(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def patched(obj, name, wrapper):
    original = getattr(obj, name)
    setattr(obj, name, wrapper(original))
    try:
        yield
    finally:
        setattr(obj, name, original)


def timed_by(split, phase):
    def wrapper(function):
        def timed(*args, **kwargs):
            with split.phase(phase):
                return function(*args, **kwargs)
        return timed
    return wrapper


# --------------------------------------------------------------------- npclust
def fit_npclust(method, X, seed):
    """Fit npclust's estimator; the split comes from timing its building blocks."""
    split = Split()
    estimator = {"imsat": IMSAT, "dec": DEC, "idec": IDEC}[method](
        n_clusters=10, random_state=seed, **SCHEDULES[method])
    module = imsat if method == "imsat" else dec
    start = time.perf_counter()
    with patched(imsat, "kth_neighbor_distance", timed_by(split, "neighbours")), \
            patched(dec, "kmeans", timed_by(split, "kmeans")), \
            patched(module, "evaluate", timed_by(split, "passes")):
        if method == "imsat":
            with patched(IMSAT, "_step", timed_by(split, "train")):
                estimator.fit(X)
        else:
            with patched(DEC, "_self_training_step", timed_by(split, "train")), \
                    patched(DEC, "_pretrain_epoch", timed_by(split, "train")):
                estimator.fit(X)
    total = time.perf_counter() - start
    split.seconds["other"] = total - sum(split.seconds.values())
    return total, split.seconds


# ---------------------------------------------------------------------- torch
def fit_torch(method, X, seed):
    import torch

    torch.manual_seed(seed)
    split = Split()
    start = time.perf_counter()
    x_all = torch.from_numpy(X)
    if method == "imsat":
        _torch_imsat(torch, x_all, split, seed)
    else:
        _torch_dec(torch, x_all, split, seed, keep_decoder=method == "idec")
    total = time.perf_counter() - start
    split.seconds["other"] = total - sum(split.seconds.values())
    return total, split.seconds


def _torch_imsat(torch, x_all, split, seed):
    settings = IMSAT(**SCHEDULES["imsat"])
    generator = np.random.default_rng(seed)
    with split.phase("neighbours"):
        distances = []
        for start in range(0, len(x_all), 1024):
            block = torch.cdist(x_all[start:start + 1024], x_all)
            distances.append(block.topk(settings.n_neighbors + 1, largest=False).values[:, -1])
        radius = settings.eps_scale * torch.cat(distances)
    widths = [x_all.shape[1], *settings.hidden_dims]
    layers = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(width_in, width_out), torch.nn.BatchNorm1d(width_out),
                   torch.nn.ReLU()]
    network = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 10))
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.lr)
    batch_norms = [module for module in network if isinstance(module, torch.nn.BatchNorm1d)]

    def information(logits):
        p, log_p = logits.softmax(1), logits.log_softmax(1)
        marginal = p.mean(0)
        return -(p * log_p).sum(1).mean() + settings.mu * (marginal * marginal.log()).sum()

    def kl(p, logits):
        return torch.nn.functional.kl_div(logits.log_softmax(1), p, reduction="batchmean")

    for _ in range(settings.n_init * settings.epochs):
        network.train()
        for batch in np.array_split(generator.permutation(len(x_all)),
                                    len(x_all) // settings.batch_size):
            with split.phase("train"):
                x = x_all[torch.from_numpy(batch)]
                optimizer.zero_grad()
                logits = network(x)
                loss = settings.lam * information(logits)
                p = logits.softmax(1).detach()
                for module in batch_norms:  # VAT's passes leave the running statistics
                    module.momentum = 0.0
                probe = torch.randn_like(x)
                probe = (settings.xi * probe / probe.norm(dim=1, keepdim=True)).requires_grad_()
                direction, = torch.autograd.grad(kl(p, network(x + probe)), probe)
                direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-30)
                loss = loss + kl(p, network(x + radius[torch.from_numpy(batch), None] * direction))
                for module in batch_norms:
                    module.momentum = 0.1
                loss.backward()
                optimizer.step()
    with split.phase("passes"), torch.no_grad():
        network.eval()
        logits = network(x_all)
        information(logits)
        logits.argmax(1)


def _torch_dec(torch, x_all, split, seed, keep_decoder):
    settings = DEC(**SCHEDULES["dec"])
    generator = np.random.default_rng(seed)
    widths = [x_all.shape[1], *settings.hidden_dims, settings.latent_dim]

    def stack(sizes):
        layers = []
        for width_in, width_out in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(width_in, width_out), torch.nn.ReLU()]
        return torch.nn.Sequential(*layers[:-1])

    encoder, decoder = stack(widths), stack(widths[::-1])
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()],
                                 lr=settings.pretrain_lr)
    n_batches = len(x_all) // settings.pretrain_batch_size
    for _ in range(settings.pretrain_epochs):
        for batch in np.array_split(generator.permutation(len(x_all)), n_batches):
            with split.phase("train"):
                x = x_all[torch.from_numpy(batch)]
                keep = (torch.rand_like(x) >= settings.corruption).to(x.dtype)
                optimizer.zero_grad()
                loss = ((decoder(encoder(x * keep / (1 - settings.corruption))) - x) ** 2).mean()
                loss.backward()
                optimizer.step()
    with split.phase("passes"), torch.no_grad():
        codes = encoder(x_all).numpy().astype(np.float64)
    with split.phase("kmeans"):
        centers = _kmeans_centers(codes, settings.kmeans_n_init, seed)
    centers = torch.nn.Parameter(torch.from_numpy(centers.astype(np.float32)))
    parameters = [*encoder.parameters(), centers, *(decoder.parameters() if keep_decoder else [])]
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    gamma = IDEC().gamma if keep_decoder else 1.0

    def soft_assignment(z):
        q = 1.0 / (1.0 + torch.cdist(z, centers) ** 2 / settings.alpha)
        q = q ** ((settings.alpha + 1) / 2)
        return q / q.sum(1, keepdim=True)

    order, position = generator.permutation(len(x_all)), 0
    for iteration in range(settings.max_iter):
        if iteration % settings.update_interval == 0:
            with split.phase("passes"), torch.no_grad():
                q = soft_assignment(encoder(x_all))
                weight = q ** 2 / q.sum(0)
                target = weight / weight.sum(1, keepdim=True)
        with split.phase("train"):
            if position + settings.batch_size > len(x_all):
                order, position = generator.permutation(len(x_all)), 0
            batch = torch.from_numpy(order[position:position + settings.batch_size])
            position += settings.batch_size
            x = x_all[batch]
            optimizer.zero_grad()
            z = encoder(x)
            loss = gamma * torch.nn.functional.kl_div(soft_assignment(z).log(), target[batch],
                                                       reduction="batchmean")
            if keep_decoder:
                loss = loss + ((decoder(z) - x) ** 2).mean()
            loss.backward()
            optimizer.step()
    with split.phase("passes"), torch.no_grad():
        soft_assignment(encoder(x_all)).argmax(1)


def _kmeans_centers(codes, n_init, seed):
    try:
        from sklearn.cluster import KMeans as SklearnKMeans
    except ImportError:
        return lloyd.kmeans(codes, 10, n_init, random_state=seed)[0]
    return SklearnKMeans(n_clusters=10, n_init=n_init, random_state=seed).fit(codes).cluster_centers_


# ----------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(SCHEDULES), choices=list(SCHEDULES))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for NumPy and torch.set_num_threads")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    X, _ = synthetic_digits_like(args.n)
    rows = []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        info = environment()
        print(describe(info) + f"; torch {torch.__version__} with {args.threads} thread(s)")
        for method in args.methods:
            runs = {"npclust": [], "torch": []}
            for round_index in range(args.rounds):
                for name, fit in (("npclust", fit_npclust), ("torch", fit_torch)):
                    runs[name].append(fit(method, X, round_index))
            row = {"method": method, "schedule": SCHEDULES[method]}
            for name, results in runs.items():
                row[f"{name}_seconds"] = statistics.median(total for total, _ in results)
                row[f"{name}_split"] = {phase: statistics.median(split.get(phase, 0.0)
                                                                 for _, split in results)
                                        for phase in ("neighbours", "kmeans", "train", "passes",
                                                      "other")}
            row["ratio"] = row["npclust_seconds"] / row["torch_seconds"]
            rows.append(row)
            print(f"\n{method}: npclust {row['npclust_seconds']:.1f}s, torch "
                  f"{row['torch_seconds']:.1f}s, ratio {row['ratio']:.2f}")
            for name in runs:
                print(f"  {name:<8} " + "  ".join(f"{phase} {seconds:6.2f}s" for phase, seconds
                                                 in row[f"{name}_split"].items()))
    write_json(args.json, {"environment": info, "threads": args.threads, "n": args.n,
                           "rounds": args.rounds, "rows": rows})


if __name__ == "__main__":
    main()
