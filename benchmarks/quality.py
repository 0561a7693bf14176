"""Clustering quality on the embedded digits: every estimator, default settings, several seeds.

Prints a Markdown table of mean ± std of ACC, NMI and ARI (plus the smallest
cluster, the mean largest probability and the fit time) and writes every run to
JSON. The README's results table is this script's output.

    python benchmarks/quality.py                      # 3 seeds, all methods
    python benchmarks/quality.py --methods imsat --seeds 0 1 2 3 4
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

import npclust
from npclust.cluster import DEC, IDEC, IMSAT, KMeans
from npclust.datasets import load_digits
from npclust.metrics import adjusted_rand_score, clustering_accuracy, normalized_mutual_info_score

ESTIMATORS = {"kmeans": KMeans, "imsat": IMSAT, "dec": DEC, "idec": IDEC}


def run_once(method, seed, X, y):
    start = time.perf_counter()
    model = ESTIMATORS[method](n_clusters=10, random_state=seed).fit(X)
    seconds = time.perf_counter() - start
    labels = model.labels_
    return {
        "method": method, "seed": seed,
        "acc": clustering_accuracy(y, labels),
        "nmi": normalized_mutual_info_score(y, labels),
        "ari": adjusted_rand_score(y, labels),
        "smallest_cluster": int(np.bincount(labels, minlength=10).min()),
        "mean_max_probability": float(model.predict_proba(X).max(axis=1).mean()),
        "n_iter": int(model.n_iter_),
        "seconds": seconds,
    }


def summarise(runs):
    rows = []
    for method in dict.fromkeys(run["method"] for run in runs):
        mine = [run for run in runs if run["method"] == method]
        row = {"method": method, "n_seeds": len(mine)}
        for key in ("acc", "nmi", "ari", "mean_max_probability", "seconds"):
            values = np.array([run[key] for run in mine])
            row[key] = (float(values.mean()), float(values.std()))
        row["smallest_cluster"] = min(run["smallest_cluster"] for run in mine)
        row["acc_per_seed"] = [round(run["acc"], 4) for run in mine]
        rows.append(row)
    return rows


def markdown_table(rows):
    lines = ["| method | ACC | NMI | ARI | ACC per seed | smallest cluster | mean max-p | fit time (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [f"{row[key][0]:.3f} ± {row[key][1]:.3f}" for key in ("acc", "nmi", "ari")]
        lines.append(
            f"| {ESTIMATORS[row['method']].__name__} | {' | '.join(cells)} | "
            f"{', '.join(f'{acc:.3f}' for acc in row['acc_per_seed'])} | "
            f"{row['smallest_cluster']} | {row['mean_max_probability'][0]:.3f} | "
            f"{row['seconds'][0]:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=list(ESTIMATORS), default=list(ESTIMATORS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "quality.json"))
    args = parser.parse_args()

    X, y = load_digits()
    runs = []
    for method in args.methods:
        for seed in args.seeds:
            run = run_once(method, seed, X, y)
            runs.append(run)
            print(f"{method:<7} seed {seed}: ACC {run['acc']:.4f}  NMI {run['nmi']:.4f}  "
                  f"ARI {run['ari']:.4f}  smallest {run['smallest_cluster']}  "
                  f"max-p {run['mean_max_probability']:.3f}  {run['seconds']:.1f}s", flush=True)
    rows = summarise(runs)
    print()
    print(markdown_table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "npclust": npclust.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "data": "embedded UCI digits (1797 x 64)",
        "runs": runs, "summary": rows,
    }, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
