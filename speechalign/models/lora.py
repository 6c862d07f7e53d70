"""LoRA adapters (peft) on the trained encoder layers and the attention decoder, and their merging.

``add_lora(model, cfg.model)`` injects peft's LoRA layers into the encoder layers that are not frozen
(``model.freeze.first_layers``) and into the decoder's feed-forward layers; only the adapters of those
parts train, the CTC head trains in full. ``merge_lora(model)`` folds the adapters into the base
weights, giving the plain architecture that ``export --format hf`` and ONNX expect.
"""

from __future__ import annotations

import re
import sys

from torch import nn


def _targets(names: list[str], layers: list[int], prefix: str) -> str | None:
    if not names or not layers:
        return None
    return rf"^{prefix}\.({'|'.join(map(str, layers))})\.(.*\.)?({'|'.join(map(re.escape, names))})$"


def add_lora(model: nn.Module, model_cfg) -> list[str]:
    """Inject adapters in place; returns the names of the wrapped modules (for the training log)."""
    lora = model_cfg.lora
    if lora.rank <= 0:
        return []
    from peft import LoraConfig, inject_adapter_in_model

    parts = []
    layers = model.encoder.layer_modules()
    trained = list(range(model_cfg.freeze.first_layers, len(layers)))
    container = _layers_container(model.encoder, layers)
    if (pattern := _targets(lora.encoder_modules, trained, "layers")) is not None:
        parts.append((container, pattern))
    if model.decoder is not None:
        decoder_layers = list(range(len(model.decoder.layers.layers)))
        if (pattern := _targets(lora.decoder_modules, decoder_layers, "layers")) is not None:
            parts.append((model.decoder.layers, pattern))
    wrapped = []
    for module, pattern in parts:
        config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=pattern)
        inject_adapter_in_model(config, module)
        wrapped += [n for n, m in module.named_modules() if _is_lora(m)]
    if not wrapped:
        raise ValueError(f"model.lora: no module matches {lora.encoder_modules} / {lora.decoder_modules} in the "
                         "trained encoder layers or the decoder layers")
    return wrapped


def _layers_container(encoder: nn.Module, layers: list[nn.Module]) -> nn.Module:
    """The module whose ``layers`` attribute holds the encoder layers (the transformers model)."""
    for module in encoder.modules():
        if isinstance(getattr(module, "layers", None), nn.ModuleList) and list(module.layers) == layers:
            return module
    raise ValueError(f"model.lora: {type(encoder).__name__} has no layers list to adapt")


def _is_lora(module: nn.Module) -> bool:
    # peft is imported only where LoRA is configured (add_lora): without it no module can hold an adapter, and
    # importing it for every model load would print its version warning in every log.
    peft_lora = sys.modules.get("peft.tuners.lora")
    return peft_lora is not None and isinstance(module, peft_lora.LoraLayer)



def freeze_lora_bases(model: nn.Module, encoder_frozen: bool = False) -> None:
    """In a part (encoder, decoder) that holds adapters only the adapters train, as peft does for a
    whole model: its base weights, layer norms and biases stay as pretrained."""
    for part, frozen in ((model.encoder, encoder_frozen), (model.decoder, False)):
        if part is not None and has_lora(part):
            for name, p in part.named_parameters():
                p.requires_grad_("lora_" in name and not frozen)


def has_lora(model: nn.Module) -> bool:
    return any(_is_lora(m) for m in model.modules())


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer (peft's merge) and put the base layer back in its place."""
    for name, module in list(model.named_modules()):
        if _is_lora(module):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    return model
