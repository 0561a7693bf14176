"""Gradient checking: central finite differences against hand-written backward passes.

* :mod:`~npclust.gradcheck.checker`: the checker (:func:`check_gradient`,
  :func:`check_function`, :func:`check_module`, :func:`numerical_gradient`);
* :mod:`~npclust.gradcheck.cases`: the awkward inputs (large logits, ties, ``-inf``);
* :mod:`~npclust.gradcheck.suite`: every backward pass in npclust, checked
  (``npclust gradcheck``).
"""

from .checker import (
                      GradcheckResult,
                      check_function,
                      check_gradient,
                      check_module,
                      numerical_gradient,
)

__all__ = ["GradcheckResult", "check_function", "check_gradient", "check_module",
           "numerical_gradient"]
