"""A full transformers ``WhisperForConditionalGeneration`` directory from an imported Whisper.

``import-whisper`` / ``fetch-pretrained`` split a CTranslate2 Whisper into our pieces: the transformers
``WhisperEncoder`` (config.json + model.safetensors), our :class:`AttentionDecoder` (decoder.json +
decoder.safetensors) and Whisper's tokenizer.json. :func:`export_whisper_hf` puts them back together as
the model plain transformers code loads (``WhisperForConditionalGeneration.from_pretrained``,
``WhisperProcessor.from_pretrained``, ``pipeline("automatic-speech-recognition")``):

* the config: the encoder's sizes from config.json, the decoder's from decoder.json, the special token
  ids looked up by name in tokenizer.json;
* the weights: the encoder's as they are (prefixed ``model.encoder.``); the decoder's mapped back from
  PyTorch's ``nn.TransformerDecoderLayer`` layout (fused ``in_proj`` q/k/v, ``linear1/2``, ``norm1/2/3``)
  to transformers' names (``q/k/v/out_proj``, ``fc1/fc2``, ``self_attn_layer_norm``,
  ``encoder_attn_layer_norm``, ``final_layer_norm``, ``embed_tokens``, ``embed_positions``), the output
  projection tied to the embedding. Whisper's key projections have no bias: a key bias adds the same
  ``q . b_k`` to every logit of a query, which softmax ignores, so dropping it (CTranslate2 stores zeros
  there; a fine-tune may not) changes no output;
* ``generation_config.json``: Whisper's defaults, the suppressed tokens and alignment heads from the
  CTranslate2 model's config.json (what CTranslate2 itself suppresses), the language and task ids for
  ``generate(language="zh", task="transcribe")``;
* a ``WhisperProcessor``: ``WhisperFeatureExtractor`` (80 or 128 mel bins as the encoder has, 30-s
  windows) and ``WhisperTokenizerFast`` from the same tokenizer.json.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch

log = logging.getLogger("speechalign.models")

# Whisper's language codes in its tokenizer's order (openai/whisper tokenizer.LANGUAGES keys).
_LANG_TOKEN = re.compile(r"^<\|([a-z]{2,3}|haw|jw|yue)\|>$")
_NOT_LANGUAGES = {"<|nocaptions|>", "<|notimestamps|>", "<|transcribe|>", "<|translate|>", "<|endoftext|>"}


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent}: no {path.name} (expected an import-whisper / fetch-pretrained "
                                "directory: config.json, model.safetensors, decoder.json, decoder.safetensors, "
                                "tokenizer.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def _ct2_config(whisper_dir: Path, ct2_dir: Path | None) -> tuple[dict, Path | None]:
    """The CTranslate2 model's config.json (suppressed ids, language ids, alignment heads) and its dir."""
    if ct2_dir is None:
        source = whisper_dir / "ct2_source.json"
        if source.is_file():
            ct2_dir = Path(json.loads(source.read_text(encoding="utf-8"))["ct2_dir"])
        elif (whisper_dir / "ct2").is_dir():
            ct2_dir = whisper_dir / "ct2"
    if ct2_dir is None or not (Path(ct2_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{whisper_dir}: the CTranslate2 model's config.json (suppressed tokens, language ids) "
                                f"was not found{f' in {ct2_dir}' if ct2_dir else ''}; give --ct2-dir")
    return json.loads((Path(ct2_dir) / "config.json").read_text(encoding="utf-8")), Path(ct2_dir)


def decoder_to_hf(state: dict[str, torch.Tensor], d_model: int) -> dict[str, torch.Tensor]:
    """Our ``AttentionDecoder`` state dict -> transformers ``WhisperDecoder`` names (prefix ``model.decoder.``)."""
    out = {"model.decoder.embed_tokens.weight": state["embed.weight"],
           "model.decoder.embed_positions.weight": state["pos"],
           "model.decoder.layer_norm.weight": state["layers.norm.weight"],
           "model.decoder.layer_norm.bias": state["layers.norm.bias"]}
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"layers\.layers\.(\d+)\.", k))})
    d = d_model
    for i in layers:
        src, dst = f"layers.layers.{i}", f"model.decoder.layers.{i}"
        for ours, theirs in (("self_attn", "self_attn"), ("multihead_attn", "encoder_attn")):
            w, b = state[f"{src}.{ours}.in_proj_weight"], state[f"{src}.{ours}.in_proj_bias"]
            for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                out[f"{dst}.{theirs}.{proj}.weight"] = w[j * d : (j + 1) * d]
                if proj != "k_proj":   # no key bias in Whisper; softmax is invariant to it (module docstring)
                    out[f"{dst}.{theirs}.{proj}.bias"] = b[j * d : (j + 1) * d]
            out[f"{dst}.{theirs}.out_proj.weight"] = state[f"{src}.{ours}.out_proj.weight"]
            out[f"{dst}.{theirs}.out_proj.bias"] = state[f"{src}.{ours}.out_proj.bias"]
        for ours, theirs in (("linear1", "fc1"), ("linear2", "fc2"), ("norm1", "self_attn_layer_norm"),
                             ("norm2", "encoder_attn_layer_norm"), ("norm3", "final_layer_norm")):
            out[f"{dst}.{theirs}.weight"] = state[f"{src}.{ours}.weight"]
            out[f"{dst}.{theirs}.bias"] = state[f"{src}.{ours}.bias"]
    return {k: v.contiguous() for k, v in out.items()}


def _token_ids(tokenizer_json: Path) -> tuple[dict[str, int], dict[int, str]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    vocab = tok.get_vocab(with_added_tokens=True)
    return vocab, {i: t for t, i in vocab.items()}


def whisper_generation_config(vocab: dict[str, int], ct2: dict, max_length: int, multilingual: bool) -> dict:
    """generation_config.json fields as openai/whisper-* checkpoints carry them, ids from this vocabulary."""
    def need(name: str) -> int:
        if name not in vocab:
            raise ValueError(f"tokenizer.json has no {name}: not a Whisper tokenizer")
        return vocab[name]

    eot, sot = need("<|endoftext|>"), need("<|startoftranscript|>")
    id_to_token = {i: t for t, i in vocab.items()}
    lang_ids = ct2.get("lang_ids") or [i for t, i in vocab.items() if _LANG_TOKEN.match(t) and t not in _NOT_LANGUAGES]
    cfg = {
        "bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot, "decoder_start_token_id": sot,
        "max_length": max_length,
        "begin_suppress_tokens": list(ct2.get("suppress_ids_begin", [])),
        "suppress_tokens": list(ct2.get("suppress_ids", [])),
        "no_timestamps_token_id": need("<|notimestamps|>"),
        "max_initial_timestamp_index": 50,   # 1.0 s, openai/whisper's max_initial_timestamp
        "return_timestamps": False,
        "is_multilingual": multilingual,
    }
    if "<|startofprev|>" in vocab:
        cfg["prev_sot_token_id"] = vocab["<|startofprev|>"]
    if ct2.get("alignment_heads"):
        cfg["alignment_heads"] = [list(h) for h in ct2["alignment_heads"]]
    if multilingual:
        cfg["lang_to_id"] = {id_to_token[i]: int(i) for i in lang_ids}
        cfg["task_to_id"] = {"transcribe": need("<|transcribe|>"), "translate": need("<|translate|>")}
        # The checkpoints' legacy default (language detected, then transcribe); generate(language=, task=)
        # replaces it, as the fine-tuning guide does by also setting forced_decoder_ids = None.
        cfg["forced_decoder_ids"] = [[1, None], [2, cfg["task_to_id"]["transcribe"]]]
    return cfg


def finetuned_generation_config(vocab: dict[str, int], vocab_size: int, max_length: int, language: str,
                                allowed: list[int] | None = None, alignment_heads: list | None = None) -> dict:
    """generation_config.json of a decoder speechalign fine-tuned: prompted as it was trained
    (``<|startoftranscript|><|language|><|transcribe|><|notimestamps|>``, no language detection) and decoded
    as speechalign decodes it, so greedy ``generate`` is speechalign's ``attention_beam`` at beam 1.

    Nothing is suppressed but the tokens outside ``allowed``: speechalign's decoding suppresses nothing (the
    reported CERs were measured so), and a decoder trained with ``model.decoder.train_vocab=targets`` never
    had the other rows' logits trained down, so free they win (AttentionDecoder.allowed). A tied output
    layer has no bias to push them down, so the restriction can only be a suppression list."""
    if not is_multilingual(vocab):
        raise ValueError("a fine-tuned Whisper decoder with an English-only vocabulary: no language prompt to export")
    ct2 = {"alignment_heads": alignment_heads} if alignment_heads else {}
    gen = whisper_generation_config(vocab, ct2, max_length, multilingual=True)
    lang = f"<|{language}|>"
    if lang not in gen["lang_to_id"]:
        raise ValueError(f"model.decoder.language={language!r}: {lang} is not in the decoder's vocabulary")
    allowed_set = set(allowed) if allowed is not None else None
    gen.update(language=language, task="transcribe",
               # read by older transformers and by tools that predate the language/task fields
               forced_decoder_ids=[[1, gen["lang_to_id"][lang]], [2, gen["task_to_id"]["transcribe"]],
                                   [3, gen["no_timestamps_token_id"]]],
               # None, not []: an empty list still makes generate() build (and warn about) suppressors
               begin_suppress_tokens=None,
               suppress_tokens=None if allowed_set is None else [i for i in range(vocab_size) if i not in allowed_set])
    return gen


def check_whisper_decoder(dec_config: dict, enc_d_model: int, where: str) -> None:
    """A decoder that transformers' ``WhisperDecoder`` can hold: Whisper's own layout, the encoder's width."""
    for key, want in (("learned_positions", True), ("scale_embedding", False), ("tie_output", True),
                      ("activation", "gelu")):
        if dec_config.get(key) != want:
            raise ValueError(f"{where}: {key}={dec_config.get(key)!r}, a Whisper decoder has "
                             f"{want!r} (is this a cold-started character decoder?)")
    if dec_config["d_model"] != enc_d_model:
        raise ValueError(f"{where}: decoder d_model {dec_config['d_model']} != encoder d_model {enc_d_model}")


def is_multilingual(vocab: dict[str, int]) -> bool:
    # openai/whisper: multilingual checkpoints have 51865+ tokens; a smaller vocabulary with language tokens
    # (a test model) is treated as multilingual too, so language/task prompts work.
    return any(_LANG_TOKEN.match(t) and t not in _NOT_LANGUAGES for t in vocab) and "<|translate|>" in vocab


def whisper_hf_model(enc_config: dict, enc_state: dict[str, torch.Tensor], dec_config: dict,
                     dec_state: dict[str, torch.Tensor], gen: dict, where: str):
    """``WhisperForConditionalGeneration`` from a transformers ``WhisperEncoder``'s config and weights and our
    ``AttentionDecoder``'s (decoder.json fields and state dict), output layer tied to the embedding."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    keep = {k: v for k, v in enc_config.items() if k not in ("architectures", "transformers_version", "dtype",
                                                               "torch_dtype", "_name_or_path")}
    # The encoder's config also carries decoder_* fields (transformers' defaults or a random-init experiment's):
    # every one of them is replaced by the decoder's real sizes.
    keep.update(vocab_size=dec_config["vocab_size"], decoder_layers=dec_config["num_layers"],
                decoder_attention_heads=dec_config["num_heads"], decoder_ffn_dim=dec_config["ffn_dim"],
                max_target_positions=dec_config["max_len"], scale_embedding=False, activation_function="gelu",
                tie_word_embeddings=True, architectures=["WhisperForConditionalGeneration"],
                # suppressed tokens live in generation_config.json (transformers moves them there anyway)
                begin_suppress_tokens=None, suppress_tokens=None, forced_decoder_ids=None,
                **{k: gen[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")})
    config = WhisperConfig(**keep)
    state = {f"model.encoder.{k}": v for k, v in enc_state.items()}
    state.update(decoder_to_hf(dec_state, config.d_model))
    model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k != "proj_out.weight"]   # tied to embed_tokens
    if missing or result.unexpected_keys:
        raise ValueError(f"{where}: weights do not fit WhisperForConditionalGeneration: missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    model.tie_weights()
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        raise RuntimeError("proj_out is not tied to the decoder embedding")
    model.generation_config = GenerationConfig(**gen)
    return model.eval()


def whisper_processor(tokenizer_json: Path, vocab: dict[str, int], eos: int, extractor,
                      language: str | None = None):
    """``WhisperProcessor``: ``extractor`` and ``WhisperTokenizerFast`` from tokenizer.json, Whisper's special
    tokens registered as such (so ``skip_special_tokens`` drops them); with ``language`` the tokenizer's
    label prefix is the one the decoder was trained with (``<|language|><|transcribe|><|notimestamps|>``)."""
    from transformers import WhisperProcessor, WhisperTokenizerFast

    specials = [t for t in sorted(vocab, key=vocab.get) if vocab[t] >= eos
                and t.startswith("<|") and t.endswith("|>") and not re.match(r"^<\|\d+\.\d+\|>$", t)]
    kwargs = dict(language=language, task="transcribe", predict_timestamps=False) if language else {}
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(tokenizer_json), pad_token="<|endoftext|>",
                                     additional_special_tokens=[t for t in specials if t != "<|endoftext|>"],
                                     model_max_length=1024, **kwargs)
    if kwargs:
        # set_prefix_tokens rewrites tokenizer.json's post-processor (__init__ only stores the fields), and
        # tokenizer_config.json saves init_kwargs only
        tokenizer.set_prefix_tokens(**kwargs)
        tokenizer.init_kwargs.update(kwargs)
    return WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer)


def export_whisper_hf(whisper_dir: str | Path, out: str | Path | None = None, ct2_dir: str | Path | None = None) -> Path:
    """Write ``out`` (default ``<whisper_dir>/hf``): a ``WhisperForConditionalGeneration`` with its
    generation config and ``WhisperProcessor``, from an import-whisper / fetch-pretrained directory.
    ``ct2_dir`` (default: the one ct2_source.json names) supplies CTranslate2's suppressed-token lists."""
    from safetensors.torch import load_file
    from transformers import WhisperFeatureExtractor

    whisper_dir = Path(whisper_dir).expanduser()
    out = Path(out).expanduser() if out is not None else whisper_dir / "hf"
    enc_config = _load_json(whisper_dir / "config.json")
    dec_config = _load_json(whisper_dir / "decoder.json")
    if enc_config.get("model_type") != "whisper":
        raise ValueError(f"{whisper_dir}/config.json: model_type {enc_config.get('model_type')!r} is not whisper")
    check_whisper_decoder(dec_config, enc_config["d_model"], f"{whisper_dir}/decoder.json")
    tokenizer_json = whisper_dir / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise FileNotFoundError(f"{whisper_dir}: no tokenizer.json (the CTranslate2 dir had none to copy)")
    ct2, ct2_dir = _ct2_config(whisper_dir, Path(ct2_dir).expanduser() if ct2_dir else None)
    vocab, _ = _token_ids(tokenizer_json)
    if len(vocab) != dec_config["vocab_size"]:
        raise ValueError(f"{tokenizer_json}: {len(vocab)} tokens, the decoder has {dec_config['vocab_size']} rows")
    gen = whisper_generation_config(vocab, ct2, dec_config["max_len"], is_multilingual(vocab))
    model = whisper_hf_model(enc_config, load_file(str(whisper_dir / "model.safetensors")), dec_config,
                             load_file(str(whisper_dir / "decoder.safetensors")), gen, str(whisper_dir))

    preprocessor = ct2_dir / "preprocessor_config.json" if ct2_dir else None
    if preprocessor is not None and preprocessor.is_file():
        extractor = WhisperFeatureExtractor.from_pretrained(str(ct2_dir))
    else:   # the pip wheels carry none: Whisper's defaults, with the encoder's mel bins
        extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    if extractor.feature_size != model.config.num_mel_bins:
        raise ValueError(f"{preprocessor}: feature_size {extractor.feature_size} != the encoder's "
                         f"{model.config.num_mel_bins} mel bins")
    processor = whisper_processor(tokenizer_json, vocab, gen["eos_token_id"], extractor)

    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    inside = out.resolve().parent == whisper_dir.resolve()   # <whisper_dir>/hf: keep it valid when moved
    (tmp / "export_source.json").write_text(json.dumps({"whisper_dir": ".." if inside else str(whisper_dir.resolve()),
                                                        "ct2_dir": str(ct2_dir.resolve()) if ct2_dir else None}),
                                            encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    log.info("transformers WhisperForConditionalGeneration + WhisperProcessor written to %s", out)
    return out
