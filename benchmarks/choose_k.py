"""How often scan_n_clusters' criteria pick the true number of clusters, on data of known k.

Data with known k: Gaussian blobs with 3, 5 and 8 centers in 5 dimensions, and 4 blobs
sheared by a random linear map (anisotropic), 5 seeds each; plus the embedded digits
(k = 10). For each, the k with the highest silhouette and the k with the highest
stability are compared with the truth. KMeans is the estimator (the deep methods take
minutes per k; pass --method to try one).

    python benchmarks/choose_k.py --json benchmarks/results/choose_k.json
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import environment, write_json  # noqa: E402

from npclust.cluster import ESTIMATORS, scan_n_clusters  # noqa: E402
from npclust.datasets import load_digits, make_blobs  # noqa: E402


def cases(seeds):
    for seed in seeds:
        for k in (3, 5, 8):
            X, _ = make_blobs(n_samples=400, n_features=5, centers=k, random_state=seed)
            yield f"blobs k={k}", k, X
        X, _ = make_blobs(n_samples=400, n_features=5, centers=4, random_state=seed)
        shear = np.random.default_rng(seed).normal(size=(5, 5))
        yield "anisotropic blobs k=4", 4, X @ shear
    X, _ = load_digits()
    yield "digits k=10", 10, X


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--method", default="KMeans", choices=sorted(ESTIMATORS))
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    estimator = ESTIMATORS[args.method]()
    runs = []
    for name, k, X in cases(args.seeds):
        candidates = range(2, 16 if k == 10 else 11)
        rows, best = scan_n_clusters(estimator, X, candidates, n_resamples=5, random_state=0)
        by_stability = max(rows, key=lambda row: (row["stability"], -row["n_clusters"]))
        runs.append({"data": name, "true_k": k, "silhouette_k": best,
                     "stability_k": by_stability["n_clusters"], "rows": rows})
        print(f"{name:<24} silhouette picks {best:>2}, stability picks "
              f"{by_stability['n_clusters']:>2}", flush=True)
    print("\n| data | runs | silhouette right | stability right | silhouette's picks |")
    print("|---|---|---|---|---|")
    for name in dict.fromkeys(run["data"] for run in runs):
        mine = [run for run in runs if run["data"] == name]
        print(f"| {name} | {len(mine)} | {sum(r['silhouette_k'] == r['true_k'] for r in mine)} | "
              f"{sum(r['stability_k'] == r['true_k'] for r in mine)} | "
              f"{', '.join(str(r['silhouette_k']) for r in mine)} |")
    write_json(args.json, {"environment": environment(), "method": args.method, "runs": runs})


if __name__ == "__main__":
    main()
