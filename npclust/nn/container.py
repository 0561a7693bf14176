"""Sequential: modules applied in order, the chain rule applied in reverse."""

from .module import Module
from .workspace import lent

__all__ = ["Sequential"]


class Sequential(Module):
    """Modules applied in order; children are named ``"0"``, ``"1"``, ... like PyTorch.

    ``backward(dy, input_grad=False)`` skips the input gradient of the first module,
    which saves a full GEMM when the network input needs no gradient.

    In training mode the activations passed from one module to the next, and the
    gradients passed back, are consumed here before the module runs again, so their
    storage is lent (see :mod:`npclust.nn.workspace`): a fixed-shape training step
    allocates no batch-sized intermediate arrays. What this Sequential returns is a
    fresh array, unless its own results are lent by an enclosing container.
    Evaluation mode (prediction on large chunks) lends nothing, so no batch-sized
    buffers stay alive.
    """

    def __init__(self, *modules):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes Modules, argument {index} is {type(module).__name__}")
            setattr(self, str(index), module)

    def __len__(self):
        return len(self.children())

    def __iter__(self):
        return iter(self.children())

    def __getitem__(self, index):
        return self.children()[index]

    @property
    def dtype(self):
        dtypes = {parameter.dtype for parameter in self.parameters()}
        return dtypes.pop() if len(dtypes) == 1 else None

    def forward(self, x):
        """``y = f_n(... f_2(f_1(x)))``.
            Input of the first module.
        """
        modules = self.children()
        lend_last = self.workspace.results_lent
        for index, module in enumerate(modules):
            with lent(module, self.training and (index < len(modules) - 1 or lend_last)):
                x = module.forward(x)
        return x

    def backward(self, dy, input_grad=True):
        """Chain rule ``dx = J_1^T (... (J_n^T dy))``: each module's backward, last to first."""
        modules = self.children()
        if not modules:
            return dy if input_grad else None
        for module in reversed(modules[1:]):
            with lent(module, self.training):
                dy = module.backward(dy)
        with lent(modules[0], self.training and self.workspace.results_lent):
            return modules[0].backward(dy, input_grad=input_grad)
