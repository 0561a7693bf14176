"""DEC/IDEC pretraining variants, judged by the k-means ACC of the pretrained codes.

The estimator files are not edited: the autoencoder is DEC's own
(``DEC()._build_networks``, the paper's 500-500-2000-10), trained here by a loop
that is DEC's ``_pretrain`` with the optimizer, batch size, schedule, corruption and
bias initialisation as parameters. ``adam`` with batch 64, 30 epochs, corruption 0.2
is exactly the current default. After pretraining the codes are clustered by k-means
(20 restarts, as DEC's initialisation) and by ``npclust.spectral.spectral_clustering``,
and the weights are saved (``/tmp/npclust_quality/``) for ``dec_finetune.py``.

    OPENBLAS_NUM_THREADS=1 python benchmarks/experiments/dec_pretrain.py --variants adam sgd1
"""

import argparse
from pathlib import Path

import numpy as np
from _exp import ALL_SETS, Recorder, Timer, data, scores

from npclust.cluster import DEC
from npclust.cluster.base import evaluate, minibatches
from npclust.cluster.dec import _reconstruction_backward
from npclust.cluster.kmeans import kmeans
from npclust.optim import SGD, Adam
from npclust.spectral import spectral_clustering

SAVE = Path("/tmp/npclust_quality")

VARIANTS = {
    # the current default
    "adam": dict(optimizer="adam", lr=1e-3, batch=64, epochs=30, corruption=0.2),
    "adam_clean": dict(optimizer="adam", lr=1e-3, batch=64, epochs=30, corruption=0.0),
    "adam_long": dict(optimizer="adam", lr=1e-3, batch=256, epochs=200, corruption=0.2),
    # DEC-Keras style: SGD momentum 0.9, batch 256, zero biases (Keras' fan-in uniform
    # weights are U(+-1/sqrt(fan_in)), the same bound npclust already uses)
    "sgd1": dict(optimizer="sgd", lr=1.0, batch=256, epochs=200, corruption=0.0, zero_bias=True),
    "sgd1_noisy": dict(optimizer="sgd", lr=1.0, batch=256, epochs=200, corruption=0.2,
                       zero_bias=True),
    "sgd01": dict(optimizer="sgd", lr=0.1, batch=256, epochs=200, corruption=0.0, zero_bias=True),
    "sgd01_noisy": dict(optimizer="sgd", lr=0.1, batch=256, epochs=200, corruption=0.2,
                        zero_bias=True),
}


def pretrain(X, seed, optimizer, lr, batch, epochs, corruption, zero_bias=False):
    """DEC's autoencoder trained as described; returns (encoder, decoder, losses)."""
    rng = np.random.default_rng(seed)
    model = DEC(n_clusters=10, corruption=corruption)
    encoder, decoder = model._build_networks(X.shape[1], rng)
    parameters = encoder.parameters() + decoder.parameters()
    if zero_bias:
        for name, parameter in list(encoder.named_parameters()) + list(decoder.named_parameters()):
            if name.endswith("bias"):
                parameter.data[...] = 0
    if optimizer == "adam":
        opt = Adam(parameters, lr=lr)
    else:
        opt = SGD(parameters, lr=lr, momentum=0.9)
    losses = []
    for epoch in range(epochs):
        total, n_batches = 0.0, 0
        for index in minibatches(X.shape[0], batch, rng):
            opt.zero_grad()
            x = X[index]
            loss, dz = _reconstruction_backward(decoder, encoder(model._corrupt(x, rng)), x)
            encoder.backward(dz, input_grad=False)
            opt.step()
            total, n_batches = total + loss, n_batches + 1
        losses.append(total / n_batches)
        if not np.isfinite(losses[-1]):
            break
    return encoder, decoder, losses


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=ALL_SETS)
    parser.add_argument("--variants", nargs="+", default=["adam", "sgd1"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override every variant's")
    parser.add_argument("--tag", default="", help="suffix of the variant name in the record")
    args = parser.parse_args()
    recorder = Recorder("dec_pretrain")
    SAVE.mkdir(exist_ok=True)
    for seed in args.seeds:
        for name in args.datasets:
            X, y = data(name)
            for variant in args.variants:
                settings = dict(VARIANTS[variant])
                if args.epochs:
                    settings["epochs"] = args.epochs
                label = variant + args.tag
                key = dict(dataset=name, variant=label, seed=seed)
                if recorder.has(**key):
                    continue
                with Timer() as timer:
                    encoder, decoder, losses = pretrain(X, seed, **settings)
                run = {**key, **settings, "seconds": timer.seconds, "final_loss": losses[-1],
                       "loss_curve": [round(v, 5) for v in losses[::10]]}
                if not np.isfinite(losses[-1]):
                    recorder.add({**run, "diverged": True})
                    continue
                Z = evaluate(encoder, X).astype(np.float64)
                _, km_labels, inertia, _ = kmeans(Z, 10, 20, random_state=seed)
                km = scores(y, km_labels)
                sc = scores(y, spectral_clustering(Z, 10, random_state=seed))
                run.update({"kmeans_" + k: v for k, v in km.items()})
                run.update({"spectral_" + k: v for k, v in sc.items()})
                run["kmeans_inertia_ratio"] = float(inertia / ((Z - Z.mean(0)) ** 2).sum())
                np.savez(SAVE / f"{name}_{label}_{seed}.npz",
                         **{"encoder." + k: v for k, v in encoder.state_dict().items()},
                         **{"decoder." + k: v for k, v in decoder.state_dict().items()})
                recorder.add(run)


if __name__ == "__main__":
    main()
