"""Deep clustering estimators with the scikit-learn interface."""

from .imsat import IMSAT

__all__ = ["IMSAT"]
