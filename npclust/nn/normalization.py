"""Batch normalisation over the rows of a batch."""

import numpy as np

from .module import Module, check_input
from .parameter import Parameter

__all__ = ["BatchNorm1d"]


class BatchNorm1d(Module):
    """Batch normalisation over the rows of a (n_samples, num_features) batch.

    In training mode each feature is normalised with the batch mean and the
    *biased* batch variance, and the running estimates are updated with the
    *unbiased* variance; in evaluation mode the running estimates are used.
    Defaults and update rule are PyTorch's.

    Parameters
    ----------
    num_features : int
    eps : float, default=1e-5
        Added to the variance before the square root.
    momentum : float or None, default=0.1
        ``running = (1 - momentum) * running + momentum * batch``; None means a
        cumulative average over all batches seen (PyTorch's ``momentum=None``).
    affine : bool, default=True
        Learn a per-feature scale ``weight`` (init 1) and shift ``bias`` (init 0).
    track_running_stats : bool, default=True
        Update the running estimates in training mode. Switching it off for a
        forward pass normalises with the batch statistics without touching the
        running estimates, which is what passes on perturbed copies of the data
        (VAT) need. The buffers exist either way.
    dtype : numpy dtype, default=np.float32
    """

    _buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float32):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.dtype = np.dtype(dtype)
        self.weight = Parameter(np.ones(self.num_features, dtype=self.dtype)) if affine else None
        self.bias = Parameter(np.zeros(self.num_features, dtype=self.dtype)) if affine else None
        self.running_mean = np.zeros(self.num_features, dtype=self.dtype)
        self.running_var = np.ones(self.num_features, dtype=self.dtype)
        self.num_batches_tracked = np.array(0, dtype=np.int64)
        self._x_hat = self._inv_std = self._x = self._mean = None
        self._used_batch_statistics = False

    def forward(self, x):
        """Normalise each feature (batch statistics in training, running ones in evaluation).

        Parameters
        ----------
        x : ndarray of shape (n_samples, num_features)
        """
        check_input(self, x, self.num_features)
        out = self.workspace.result("output", x.shape, self.dtype)
        if not self.training:
            return self._forward_with_running_statistics(x, out)
        n_samples = x.shape[0]
        if n_samples < 2:
            raise ValueError(
                "BatchNorm1d needs more than 1 sample per batch in training mode, "
                f"got input of shape {x.shape}"
            )
        mean = x.mean(axis=0)
        # x_hat is a cache for backward only, so its array is reused from call to call.
        x_hat = np.subtract(x, mean, out=self.workspace.array("x_hat", x.shape, self.dtype))
        # Biased variance: sum over rows of the squared centred input, in one pass.
        variance = np.einsum("ij,ij->j", x_hat, x_hat)
        variance /= n_samples
        if self.track_running_stats:
            self._update_running_statistics(mean, variance, n_samples)
        self._used_batch_statistics = True
        self._inv_std = 1.0 / np.sqrt(variance + self.eps)
        x_hat *= self._inv_std
        self._x_hat, self._x = x_hat, None
        if not self.affine:
            # A copy: the caller may modify the output (an in-place ReLU does).
            y = np.empty_like(x_hat) if out is None else out
            np.copyto(y, x_hat)
            return y
        y = np.multiply(x_hat, self.weight.data, out=out)
        y += self.bias.data
        return y

    def backward(self, dy, input_grad=True):
        """Gradients through the affine map and, in training mode, the batch statistics.

        With x_hat = (x - mean) * inv_std and g = dy * weight (or dy if not affine):
        dL/dweight += sum_rows(dy * x_hat), dL/dbias += sum_rows(dy), and

        * training: dL/dx = inv_std * (g - mean_rows(g) - x_hat * mean_rows(g * x_hat)),
          because mean and variance depend on every row of the batch;
        * evaluation: dL/dx = inv_std * g, the running statistics being constants.

        In training mode this is computed as
        ``weight * inv_std * (dy - sum_rows(dy) / n - x_hat * sum_rows(dy * x_hat) / n)``,
        reusing the two row sums of the parameter gradients (identical algebra, four
        passes over the batch instead of ten).
        """
        if self._inv_std is None:
            raise RuntimeError("BatchNorm1d.backward called before forward")
        x_hat = self._x_hat
        if x_hat is None and self.affine and self.weight.requires_grad:
            x_hat = (self._x - self._mean) * self._inv_std  # evaluation mode, see forward
        through_statistics = input_grad and self._used_batch_statistics
        train_weight = self.affine and self.weight.requires_grad
        train_bias = self.affine and self.bias.requires_grad
        dy_sum = dy.sum(axis=0) if train_bias or through_statistics else None
        dy_x_hat_sum = np.einsum("ij,ij->j", dy, x_hat) \
            if train_weight or through_statistics else None
        if train_weight:
            self.weight.grad += dy_x_hat_sum
        if train_bias:
            self.bias.grad += dy_sum
        if not input_grad:
            return None
        scale = self._inv_std * self.weight.data if self.affine else self._inv_std
        dx = self.workspace.result("input_grad", dy.shape, np.result_type(dy, self._inv_std))
        if not self._used_batch_statistics:
            return np.multiply(dy, scale, out=dx)
        n_samples = dy.shape[0]
        dx = np.multiply(x_hat, dy_x_hat_sum / n_samples, out=dx)
        dx += dy_sum / n_samples
        np.subtract(dy, dx, out=dx)
        dx *= scale
        return dx

    def _forward_with_running_statistics(self, x, out):
        """Evaluation mode: one new array; the input, not x_hat, is kept for backward.

        Prediction runs on large chunks, so this keeps one chunk-sized array fewer
        alive; the rarely needed x_hat is rebuilt in backward from the kept input.
        """
        self._used_batch_statistics = False
        self._mean = self.running_mean.copy()
        self._inv_std = 1.0 / np.sqrt(self.running_var + self.eps)
        self._x, self._x_hat = x, None
        y = np.subtract(x, self._mean, out=out)
        if self.affine:
            y *= self._inv_std * self.weight.data
            y += self.bias.data
        else:
            y *= self._inv_std
        return y

    def _update_running_statistics(self, mean, variance, n_samples):
        self.num_batches_tracked += 1
        factor = 1.0 / self.num_batches_tracked if self.momentum is None else self.momentum
        unbiased_variance = variance * (n_samples / (n_samples - 1))
        self.running_mean *= 1 - factor
        self.running_mean += factor * mean
        self.running_var *= 1 - factor
        self.running_var += factor * unbiased_variance

    def extra_repr(self):
        """The arguments shown inside ``repr()``."""
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}"
        )
