"""The base class of all layers: parameter bookkeeping, train/eval, state dicts, dtypes."""

from collections import OrderedDict

import numpy as np

from .parameter import Parameter, flatten_parameters
from .workspace import Workspace

__all__ = ["Module", "check_input"]


class Module:
    """Base class: parameter bookkeeping, train/eval, state dicts, dtype moves.

    Subclasses implement ``forward`` and ``backward``. Parameters, buffers and child
    modules are plain attributes; they are discovered in the order they were assigned,
    which is also PyTorch's registration order, so state-dict keys line up.
    Buffer attribute names are listed in the class attribute ``_buffer_names``.
    """

    _buffer_names = ()

    def __init__(self):
        self.training = True

    # ----------------------------------------------------------------- running
    def forward(self, x):
        """Compute the output, keeping what :meth:`backward` needs.

        Parameters
        ----------
        x : ndarray
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy, input_grad=True):
        """Return dL/dx and accumulate (``+=``) each parameter's gradient.

        Parameters
        ----------
        dy : ndarray shaped like the output
            Gradient of the loss with respect to the output of the latest forward pass.
        input_grad : bool, default=True
            Whether to compute dL/dx; False returns None (parameter gradients, if any,
            are still accumulated).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x):
        return self.forward(x)

    @property
    def workspace(self):
        """The :class:`~npclust.nn.workspace.Workspace` of arrays this module reuses.

        Created on first use; neither a parameter nor a buffer, so state dicts never
        see it, and pickles leave it out.
        """
        workspace = self.__dict__.get("_workspace")
        if workspace is None:
            workspace = self.__dict__["_workspace"] = Workspace()
        return workspace

    def __getstate__(self):
        """Pickle without the workspace and the arrays cached for ``backward``.

        The next forward pass recreates both; keeping them would store batch-sized
        activations next to the weights.
        """
        return {name: None if name.startswith("_") and isinstance(value, np.ndarray) else value
                for name, value in self.__dict__.items() if name != "_workspace"}

    # ---------------------------------------------------------- introspection
    def children(self):
        """Direct child modules, in assignment order."""
        return [value for value in vars(self).values() if isinstance(value, Module)]

    def named_children(self):
        """``(name, module)`` pairs of the direct child modules, in assignment order."""
        return [(name, value) for name, value in vars(self).items() if isinstance(value, Module)]

    def named_parameters(self, prefix=""):
        """``(name, Parameter)`` pairs with PyTorch's dotted names, e.g. ``"0.weight"``.

        Parameters
        ----------
        prefix : str, default=""
            Prepended to every name.
        """
        named = []
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                named.append((prefix + name, value))
            elif isinstance(value, Module):
                named.extend(value.named_parameters(prefix + name + "."))
        return named

    def parameters(self):
        """All parameters of this module and its children, in :meth:`named_parameters` order."""
        return [parameter for _, parameter in self.named_parameters()]

    def named_buffers(self, prefix=""):
        """``(name, ndarray)`` pairs of non-trainable state (e.g. running statistics).

        Parameters
        ----------
        prefix : str, default=""
            Prepended to every name.
        """
        named = [(prefix + name, getattr(self, name)) for name in self._buffer_names]
        for name, child in self.named_children():
            named.extend(child.named_buffers(prefix + name + "."))
        return named

    def zero_grad(self):
        """Set every parameter gradient to zero (in place, so views stay views).

        The zeros are written lazily, see :class:`Parameter`.
        """
        for parameter in self.parameters():
            parameter.zero_grad()

    def requires_grad_(self, requires_grad=True):
        """Turn parameter-gradient accumulation on or off for every parameter (returns self).

        With it off, ``backward`` still returns dL/dx but computes no parameter
        gradient, like differentiating with respect to the input only
        (``torch.autograd.grad(y, x)``); VAT's power iteration uses this.

        Parameters
        ----------
        requires_grad : bool, default=True
        """
        for parameter in self.parameters():
            parameter.requires_grad = bool(requires_grad)
        return self

    def train(self, mode=True):
        """Switch this module and its children to training (or evaluation) mode.

        Parameters
        ----------
        mode : bool, default=True
            True for training, False for evaluation.
        """
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        """Switch this module and its children to evaluation mode (``train(False)``)."""
        return self.train(False)

    # ------------------------------------------------------------ state dicts
    def state_dict(self):
        """Copies of all parameters and buffers, keyed and ordered as PyTorch would.

        Returns
        -------
        OrderedDict of str to ndarray
            ``Linear.weight`` has shape (out_features, in_features), as in ``torch.nn``.
        """
        state = OrderedDict()
        self._collect_state(state, "")
        return state

    def _collect_state(self, state, prefix):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                state[prefix + name] = value.data.copy()
            elif name in self._buffer_names:
                state[prefix + name] = np.array(value, copy=True)
            elif isinstance(value, Module):
                value._collect_state(state, prefix + name + ".")

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into this module's parameters and buffers.

        Values are written into the existing arrays (cast to their dtype), so
        parameters that are views into a flat buffer stay views.

        Parameters
        ----------
        state_dict : mapping of str to array_like
            For example the output of :meth:`state_dict`, or a ``torch.nn`` module's
            state dict converted with ``{k: v.numpy() for k, v in sd.items()}``.
        strict : bool, default=True
            Raise if keys are missing or unexpected.
        """
        targets = OrderedDict((name, p.data) for name, p in self.named_parameters())
        targets.update(self.named_buffers())
        missing = [key for key in targets if key not in state_dict]
        unexpected = [key for key in state_dict if key not in targets]
        if strict and (missing or unexpected):
            raise KeyError(
                f"state_dict does not match {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        for key, target in targets.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            if value.shape != target.shape:
                raise ValueError(
                    f"shape mismatch for {key!r}: module has {target.shape}, "
                    f"state_dict has {value.shape}"
                )
            target[...] = value
        return self

    # ------------------------------------------------------------------ dtype
    def to(self, dtype):
        """Cast all floating parameters and buffers to ``dtype`` (returns self).

        Casting allocates new arrays, so call :meth:`flatten_parameters` again
        afterwards if the parameters should share one buffer.

        Parameters
        ----------
        dtype : numpy floating dtype
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"modules hold floating-point parameters, got dtype {dtype}")
        for module in self.modules():
            for name, value in list(vars(module).items()):
                if isinstance(value, Parameter):
                    value.data = value.data.astype(dtype)
                    value.grad = value.grad.astype(dtype)
                elif name in module._buffer_names and np.asarray(value).dtype.kind == "f":
                    setattr(module, name, np.asarray(value).astype(dtype))
            if "dtype" in vars(module):
                module.dtype = dtype
        return self

    def modules(self):
        """This module and all modules below it, depth first."""
        found = [self]
        for child in self.children():
            found.extend(child.modules())
        return found

    def flatten_parameters(self):
        """Move all parameters into one :class:`~npclust.nn.FlatBuffer`, in ``parameters()`` order.

        Afterwards every ``Parameter.data`` (and ``.grad``) is a view into a single
        1-D array, and records where (:attr:`Parameter.flat`), so an optimizer
        updates the whole model with a few whole-buffer vector operations instead
        of one small operation per array. See :func:`~npclust.nn.flatten_parameters`.

        Returns
        -------
        self
        """
        flatten_parameters(self.parameters())
        return self

    # ----------------------------------------------------------------- display
    def extra_repr(self):
        """The arguments shown inside ``repr()``; none by default."""
        return ""

    def __repr__(self):
        children = self.named_children()
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)


def check_input(module, x, n_features):
    """Raise a clear error for input a layer cannot take (wrong rank, width or dtype)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{type(module).__name__} expects an ndarray, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(
            f"{type(module).__name__} expects input of shape (n_samples, {n_features}), "
            f"got {x.shape}"
        )
    if x.dtype != module.dtype:
        raise TypeError(
            f"{type(module).__name__} holds {module.dtype} parameters but got {x.dtype} input; "
            f"convert the input with x.astype(np.{module.dtype}) or the module with .to()"
        )
