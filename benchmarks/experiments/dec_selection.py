"""Label-free choice among DEC/IDEC runs: own objective, silhouette, pooled silhouette, consensus.

Reads the runs of ``dec_finetune.py`` (their final codes and labels) and, per data set
and method, pools all runs (seeds x pretrainings x initialisations). For each run:

- ``objective``: its own final KL(P || Q) (lower is better);
- ``silhouette``: the silhouette of its labels in its own codes;
- ``pooled silhouette``: the mean silhouette of its labels in *every* run's codes
  (so a run is not judged only by the embedding it shaped itself);

and reports the Spearman rank correlation of each score with ACC (sign chosen so
that +1 means "the criterion ranks runs as ACC does"), the ACC of the run each
criterion keeps against the pool's mean, and the ACC of the consensus of all the
pool's labelings (``npclust.spectral.consensus_clustering``). Labels only score.
"""

import json
from collections import defaultdict

import numpy as np
from _exp import ALL_SETS, RESULTS, data, scores
from dec_pretrain import SAVE
from scipy.stats import spearmanr
from summarize import read

from npclust.spectral import consensus_clustering


def silhouette(Z, labels):
    """Mean silhouette of ``labels`` in ``Z`` (Euclidean), through one n x n GEMM."""
    Z = np.asarray(Z, dtype=np.float64)
    sq = np.einsum("ij,ij->i", Z, Z)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * Z @ Z.T, 0))
    n_clusters = labels.max() + 1
    one_hot = np.eye(n_clusters)[labels]
    counts = one_hot.sum(axis=0)
    sums = D @ one_hot
    own = sums[np.arange(len(Z)), labels]
    a = own / np.maximum(counts[labels] - 1, 1)
    other = sums / np.where(counts > 0, counts, np.inf)
    other[np.arange(len(Z)), labels] = np.inf
    b = other.min(axis=1)
    s = np.where(counts[labels] > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
    return float(s.mean())


def main():
    runs = read("dec_finetune")
    result = defaultdict(dict)
    picks = defaultdict(dict)
    for method in sorted({run["method"] for run in runs}):
        for dataset in ALL_SETS:
            pool = [run for run in runs if run["method"] == method and run["dataset"] == dataset]
            if len(pool) < 3:
                continue
            _, y = data(dataset)
            finals = [np.load(SAVE / f"final_{dataset}_{r['pretraining']}_{method}_{r['init']}_"
                              f"{r['seed']}.npz") for r in pool]
            codes = [f["codes"] for f in finals]
            labels = [f["labels"] for f in finals]
            acc = np.array([r["acc"] for r in pool])
            criteria = {
                "own objective KL (lower)": -np.array([r["objective"] for r in pool]),
                "own silhouette": np.array([silhouette(z, labeling) for z, labeling in zip(codes, labels)]),
                "pooled silhouette": np.array([np.mean([silhouette(z, labeling) for z in codes])
                                               for labeling in labels]),
            }
            result[method].setdefault("pool size", {})[dataset] = f"{len(pool)}"
            result[method].setdefault("pool mean ACC", {})[dataset] = float(acc.mean())
            for name, score in criteria.items():
                result[method].setdefault(f"Spearman: {name}", {})[dataset] = float(
                    spearmanr(score, acc).statistic)
                result[method].setdefault(f"ACC kept by {name}", {})[dataset] = float(
                    acc[int(np.argmax(score))])
            consensus = consensus_clustering(np.array(labels), 10, random_state=0)
            result[method].setdefault("ACC of consensus of the pool", {})[dataset] = \
                scores(y, consensus)["acc"]
            picks[method][dataset] = {"acc": acc.tolist(),
                                      **{k: v.tolist() for k, v in criteria.items()}}
    (RESULTS / "dec_selection.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "dec_selection_scores.json").write_text(json.dumps(picks, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
