"""Clustering estimators with the scikit-learn interface, and the registry of their names."""

from .base import DegenerateResultWarning
from .dec import DEC, IDEC
from .imsat import IMSAT
from .kmeans import KMeans
from .persistence import ESTIMATORS, load
from .selection import scan_n_clusters
from .spectral_clustering import SpectralClustering

__all__ = ["DEC", "IDEC", "IMSAT", "KMeans", "SpectralClustering", "ESTIMATORS", "load",
           "scan_n_clusters", "DegenerateResultWarning"]
