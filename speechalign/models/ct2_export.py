"""A fine-tuned Whisper experiment as a CTranslate2 model, converted once per checkpoint weights.

``export --format hf`` writes the whole ``WhisperForConditionalGeneration``; CTranslate2's own converter
(what ``ct2-transformers-converter`` runs) turns it into ``model.bin``. The result is cached in
``<exp>/ct2/<checkpoint>-<sha256[:16]>/``, keyed by the SHA-256 of the weights file, so a re-averaged or
retrained checkpoint is converted again and never read stale. Weights stay float32 on disk; the compute type
(int8 on CPU, float16 on GPU) is chosen when the model is loaded.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path

from speechalign.models.experiment import resolve_weights
from speechalign.models.fetch import sha256_of

log = logging.getLogger("speechalign.models")
CACHE = "ct2"


def ct2_cache_dir(exp_dir: str | Path, checkpoint: str) -> Path:
    """Where the conversion of ``checkpoint``'s current weights lives (it may not exist yet)."""
    exp_dir = Path(exp_dir)
    weights = resolve_weights(exp_dir, checkpoint)
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", Path(checkpoint).stem if checkpoint.endswith(".safetensors")
                  else checkpoint)
    return exp_dir / CACHE / f"{name}-{sha256_of(weights)[:16]}"


def ct2_model(exp_dir: str | Path, checkpoint: str) -> Path:
    """The CTranslate2 directory of ``checkpoint`` (model.bin, tokenizer.json, config.json), converting it
    first when its weights have no conversion yet. Older conversions of the same checkpoint name are removed."""
    from ctranslate2.converters import TransformersConverter

    from speechalign.models.export import export

    out = ct2_cache_dir(exp_dir, checkpoint)
    if (out / "model.bin").is_file():
        return out
    log.info("converting %s (checkpoint %s) to CTranslate2 in %s (once per weights)", exp_dir, checkpoint, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".convert-", dir=out.parent) as tmp:
        hf = export(exp_dir, Path(tmp) / "hf", "hf", checkpoint)
        if not (hf / "generation_config.json").is_file():
            raise ValueError(f"--engine ct2: {exp_dir} is not a Whisper experiment with Whisper's decoder "
                             "(model.decoder.pretrained); CTranslate2 runs whole Whisper models only")
        staged = Path(tmp) / "ct2"
        TransformersConverter(str(hf), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(staged), quantization=None)
        same_name = re.compile(re.escape(out.name.rsplit("-", 1)[0]) + r"-[0-9a-f]{16}")
        stale = [p for p in out.parent.iterdir() if same_name.fullmatch(p.name) and p != out]
        staged.rename(out)
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return out
