"""npclust: deep clustering in pure NumPy, with every gradient derived and checked.

Submodules: ``nn`` (layers with hand-written backward passes), ``functional``
(stable softmax, log-sum-exp, entropy and their vector-Jacobian products),
``losses``, ``optim`` (SGD, Adam, AdamW), ``gradcheck`` (finite differences),
``cluster`` (IMSAT, DEC, IDEC, KMeans, SpectralClustering, the training loop, model
files), ``files`` (the archive format, checkpoints, data matrices), ``metrics``,
``datasets``. The layers and what may import what: ``docs/architecture.md``.

Submodules and the names below load on first use, so ``import npclust`` stays
fast and does not import SciPy until something needs it.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "cli", "cluster", "datasets", "demo", "files", "functional", "gradcheck", "interop",
    "lloyd", "losses", "metrics", "neighbors", "nn", "optim", "plotting", "scaling",
    "spectral", "validation",
)
_NAMES = {
    "IMSAT": "cluster", "DEC": "cluster", "IDEC": "cluster", "KMeans": "cluster",
    "SpectralClustering": "cluster",
    "load": "cluster", "load_digits": "datasets", "NotFittedError": "validation",
}

__all__ = ["__version__", *_SUBMODULES, *_NAMES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'npclust' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
