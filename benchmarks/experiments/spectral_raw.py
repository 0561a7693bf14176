"""Baselines without a network: k-means and spectral clustering of the raw features.

Spectral clustering (``npclust.spectral``, self-tuning kNN graph) for a few graph
sizes, and k-means with 20 restarts, on every visible set (2,500 samples at most).

    OPENBLAS_NUM_THREADS=1 python benchmarks/experiments/spectral_raw.py
"""

import argparse

import numpy as np
from _exp import ALL_SETS, Recorder, Timer, data, scores

from npclust.cluster.kmeans import kmeans
from npclust.spectral import spectral_clustering


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=ALL_SETS)
    parser.add_argument("--neighbors", nargs="+", type=int, default=[10, 20])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    recorder = Recorder("raw_baselines")
    for name in args.datasets:
        X, y = data(name)
        X = X.astype(np.float64)
        for seed in args.seeds:
            for k in [None] + args.neighbors:
                variant = "kmeans" if k is None else f"spectral k={k}"
                key = dict(dataset=name, variant=variant, seed=seed)
                if recorder.has(**key):
                    continue
                with Timer() as timer:
                    if k is None:
                        labels = kmeans(X, 10, 20, random_state=seed)[1]
                    else:
                        labels = spectral_clustering(X, 10, n_neighbors=k, random_state=seed)
                recorder.add({**key, **scores(y, labels), "seconds": timer.seconds})


if __name__ == "__main__":
    main()
