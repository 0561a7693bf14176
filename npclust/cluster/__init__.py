"""Clustering estimators with the scikit-learn interface."""

from .dec import DEC, IDEC
from .imsat import IMSAT
from .kmeans import KMeans

__all__ = ["DEC", "IDEC", "IMSAT", "KMeans"]
