"""Port-reference vectors: a model's inputs, outputs, loss and every gradient in one file.

A port of an npclust model to another framework or language checks itself by
loading the weights, feeding the stored input, and comparing its output, loss and
gradients with the stored ones. Everything is computed in float64 from the model's
weights, in training mode (BatchNorm normalises with the batch statistics), with a
fixed seed, so the file is reproducible.

File format: an npclust archive (:mod:`npclust.files.archive`, no pickle) with

* ``__npclust__``: the JSON header ``{"kind": "port-reference", "format_version": 2,
  "class": ..., "params": {...}, "loss": "<formula>", "loss_value": float,
  "n_samples": int, "seed": int, "modules": [...], "mode": ...}``;
* ``input``: the input batch ``x``, shape ``(n_samples, n_features)``, float64;
* ``output/<name>``: forward results (IMSAT: ``logits``; DEC/IDEC: ``embedding``,
  ``soft_assignment``, ``target``, and for IDEC ``reconstruction``);
* ``param/<module>/<key>``: every parameter and buffer with PyTorch's state-dict key
  (``param/network/0.weight``), plus ``param/cluster_centers`` for DEC/IDEC;
* ``grad/input``: the total derivative dloss/dx (for IDEC it includes x's role as
  the reconstruction target; P is held fixed); ``grad/<module>/<key>``: dloss/d(parameter), same keys;
  ``grad/cluster_centers`` for DEC/IDEC.
"""

import numpy as np

from ..files.archive import json_value, write_archive
from ..losses import dec_loss, mse, mutual_information, student_t_assignment, target_distribution
from .dec import DEC
from .imsat import IMSAT

__all__ = ["compute_port_vectors", "export_port_vectors"]


def _input_batch(n_features, n_samples, seed):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(n_samples, n_features))


def _imsat_reference(model, x):
    network = model._build_model(model.n_features_in_, rng=0)["network"].to(np.float64)
    network.load_state_dict(model.network_.state_dict())
    network.train()
    network.zero_grad()
    logits = network(x)
    loss, dlogits = mutual_information(logits, mu=model.mu)
    dx = network.backward(dlogits)
    return {
        "loss": "H(Y|X) - mu * H(Y) of softmax(logits) (npclust.losses.mutual_information)",
        "loss_value": loss, "outputs": {"logits": logits}, "input_grad": dx,
        "modules": {"network": network}, "extra_params": {}, "extra_grads": {},
    }


def _dec_reference(model, x):
    modules = model._build_model(model.n_features_in_, rng=0)
    encoder, decoder = (modules[name].to(np.float64) for name in ("encoder", "decoder"))
    encoder.load_state_dict(model.encoder_.state_dict())
    decoder.load_state_dict(model.decoder_.state_dict())
    centers = model.cluster_centers_.astype(np.float64)
    for module in (encoder, decoder):
        module.train()
        module.zero_grad()
    z = encoder(x)
    soft_assignment = student_t_assignment(z, centers, model.alpha)
    target = target_distribution(soft_assignment)
    weight = model._clustering_weight()
    kl, dz, dcenters = dec_loss(z, centers, target, model.alpha)
    loss, dz, dcenters = weight * kl, weight * dz, weight * dcenters
    outputs = {"embedding": z, "soft_assignment": soft_assignment, "target": target}
    formula = "KL(P || Q), batch mean, P = target_distribution(Q) held fixed"
    if model._keeps_decoder:
        reconstruction = decoder(z)
        reconstruction_loss, dreconstruction = mse(reconstruction, x)
        dz = dz + decoder.backward(dreconstruction)
        loss += reconstruction_loss
        outputs["reconstruction"] = reconstruction
        formula = f"mse(decoder(z), x) + {weight} * {formula}"
    dx = encoder.backward(dz)
    if model._keeps_decoder:
        # x is also the reconstruction target: d mse / d target = -d mse / d reconstruction.
        dx -= dreconstruction
    # DEC's loss does not involve the decoder, so only IDEC's reference lists it.
    modules = {"encoder": encoder, "decoder": decoder} if model._keeps_decoder else {
        "encoder": encoder}
    return {
        "loss": formula, "loss_value": loss, "outputs": outputs, "input_grad": dx,
        "modules": modules,
        "extra_params": {"cluster_centers": centers}, "extra_grads": {"cluster_centers": dcenters},
    }


def compute_port_vectors(model, n_samples=16, seed=0):
    """Inputs, outputs, loss and gradients of a fitted model, in float64.

    Parameters
    ----------
    model : IMSAT, DEC or IDEC
        Fitted. Its weights are copied, never changed.
    n_samples : int, default=16
        Rows of the input batch (uniform in [0, 1), from ``seed``); at least 2, since
        BatchNorm needs a batch.
    seed : int, default=0

    Returns
    -------
    header : dict
        The file's JSON header (see the module docstring).
    arrays : dict of str to ndarray
        The file's arrays.
    """
    if not isinstance(model, (IMSAT, DEC)):
        raise TypeError(
            f"reference vectors exist for IMSAT, DEC and IDEC models, not {type(model).__name__}"
        )
    model._check_fitted_input(np.zeros((1, getattr(model, "n_features_in_", 1))))
    if int(n_samples) < 2:
        raise ValueError(f"n_samples must be at least 2 (BatchNorm needs a batch), got {n_samples}")
    x = _input_batch(model.n_features_in_, int(n_samples), seed)
    computed = (_imsat_reference if isinstance(model, IMSAT) else _dec_reference)(model, x)
    arrays = {"input": x, "grad/input": computed["input_grad"]}
    arrays.update({f"output/{name}": value for name, value in computed["outputs"].items()})
    for module_name, module in computed["modules"].items():
        arrays.update({f"param/{module_name}/{key}": value
                       for key, value in module.state_dict().items()})
        arrays.update({f"grad/{module_name}/{key}": parameter.grad.copy()
                       for key, parameter in module.named_parameters()})
    arrays.update({f"param/{name}": value for name, value in computed["extra_params"].items()})
    arrays.update({f"grad/{name}": value for name, value in computed["extra_grads"].items()})
    header = {
        "class": type(model).__name__,
        "params": {name: json_value(value) for name, value in model.get_params().items()},
        "loss": computed["loss"], "loss_value": float(computed["loss_value"]),
        "n_samples": int(n_samples), "seed": int(seed),
        "modules": sorted(computed["modules"]), "mode": "train (batch statistics)",
    }
    return header, arrays


def export_port_vectors(model, path, n_samples=16, seed=0):
    """Write :func:`compute_port_vectors` to ``path`` as an npclust archive, atomically.

    Parameters
    ----------
    model : IMSAT, DEC or IDEC
        Fitted.
    path : str or os.PathLike
    n_samples : int, default=16
    seed : int, default=0

    Returns
    -------
    dict
        The decoded JSON header (class, loss formula and value, ...).
    """
    header, arrays = compute_port_vectors(model, n_samples, seed)
    write_archive(path, "port-reference", header, arrays)
    return header
