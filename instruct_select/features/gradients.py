"""Per-example gradients of the one loss with respect to LoRA weights, a whole batch per backward.

For a linear layer y = x Wᵀ, the gradient of example b's loss is Σ_t ∂L_b/∂y_bt ⊗ x_bt. So one
forward pass records each LoRA linear layer's input x (B, T, in) and output y; one call to
``torch.autograd.grad(Σ_b L_b, outputs)`` gives every ∂L/∂y at once (examples do not interact,
so row b of it is example b's); an einsum then yields the (B, out, in) per-example gradients.
No parameter gradient is accumulated and no example gets a backward pass of its own.

Padding needs no care: with right padding, pad positions come after every labelled token, so
causal attention keeps them out of the loss and their ∂L/∂y is exactly zero.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from ..errors import ConfigError
from ..loss import model_per_example_loss


def lora_modules(model) -> dict[str, torch.nn.Linear]:
    """LoRA's A and B linear layers, keyed by the name of their weight parameter."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and (".lora_A." in name + "." or ".lora_B." in name + "."):
            if module.weight.requires_grad:
                found[f"{name}.weight"] = module
    if not found:
        raise ConfigError(
            "the model has no trainable LoRA layers: gradient features are taken with respect to "
            "LoRA weights, so warm up with LoRA (not full fine-tuning)"
        )
    for name, module in found.items():
        if module.bias is not None:
            raise ConfigError(f"{name}: LoRA layers with a bias are not supported for gradient features")
    return found


@contextmanager
def _record_io(modules: dict[str, torch.nn.Linear]) -> Iterator[dict[str, tuple]]:
    records: dict[str, tuple] = {}
    handles = []
    for name, module in modules.items():
        def hook(mod, inputs, output, name=name):
            records[name] = (inputs[0].detach(), output)
        handles.append(module.register_forward_hook(hook))
    try:
        yield records
    finally:
        for h in handles:
            h.remove()


def per_example_output_grads(model, batch: dict[str, torch.Tensor], modules: dict[str, torch.nn.Linear]):
    """Per-example losses, and each LoRA layer's (input, ∂(Σ losses)/∂output) for the batch."""
    with _record_io(modules) as records:
        losses = model_per_example_loss(model, batch)
    names = list(modules)
    outputs = [records[n][1] for n in names]
    grads = torch.autograd.grad(losses.sum(), outputs, allow_unused=True)
    io = {}
    for name, grad in zip(names, grads):
        x = records[name][0]
        io[name] = (x, torch.zeros_like(outputs[names.index(name)]) if grad is None else grad.detach())
    return losses.detach(), io


def layer_gradient(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """Per-example weight gradient of a linear layer: (B, out, in), in float32.

    Multiplied with the small side (LoRA's rank) first, (B, small, T) @ (B, T, big), which BLAS does
    several times faster than the other way round; for out > in the result is a transposed view.
    """
    x, grad_out = x.float(), grad_out.float()
    if grad_out.shape[-1] > x.shape[-1]:
        return torch.bmm(x.transpose(1, 2), grad_out).transpose(1, 2)
    return torch.bmm(grad_out.transpose(1, 2), x)


def per_example_gradients(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-example losses and the full per-example gradient of every LoRA weight (by name)."""
    modules = lora_modules(model)
    losses, io = per_example_output_grads(model, batch, modules)
    return losses, {name: layer_gradient(x, g) for name, (x, g) in io.items()}
