"""Any transformers speech encoder but Whisper, by hub id or directory, read as speechalign reads every encoder.

:class:`HFSpeechEncoder` wraps ``AutoModel`` and the model's own feature extractor: 16-kHz waveforms (B, N) with
their lengths in, every layer's states with their valid frames out.
:func:`speechalign.models.encoders.load_speech_encoder` builds it, or Whisper's own encoder, from a config's
``model_type``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speechalign.models.states import EncoderOutput, padding_mask

log = logging.getLogger("speechalign.models")
SAMPLE_RATE = 16000
FAMILIES = ("data2vec-audio", "hubert", "wav2vec2", "wav2vec2-bert", "wav2vec2-conformer", "wavlm", "whisper")
# Layers that read the frames past an utterance's end (wav2vec2-conformer's depthwise convolution is not masked,
# data2vec-audio stacks five positional convolutions): outside training such a model reads each utterance alone.
READS_PADDING = ("data2vec-audio", "wav2vec2-conformer")
EXTRACTORS = ("Wav2Vec2FeatureExtractor", "SeamlessM4TFeatureExtractor")
EXTRACTOR_KEY = "feature_extractor"   # the extractor's settings inside an experiment's encoder_config.json


class HFSpeechEncoder(nn.Module):
    """A transformers speech model (``AutoModel``) with its feature extractor.

    Waveform models (hubert, wavlm, data2vec-audio, wav2vec2, wav2vec2-conformer) read each utterance as their
    extractor prepares one alone (``do_normalize``: zero mean and unit variance over its own samples), with the
    attention mask where the extractor returns one; w2v-BERT reads its extractor's log-mel frames (10 ms, stacked
    in pairs) with their mask. A model whose convolutions normalize over time (``feat_extract_norm: group``:
    wav2vec2-base, hubert-base, wavlm-base) or whose layers read padding (``READS_PADDING``) runs each utterance
    alone outside training, so an embedding never depends on its batch; training reads padded batches, as
    transformers' own fine-tuning does.
    """

    accepts_features = False

    def __init__(self, model: nn.Module, extractor):
        super().__init__()
        name = type(extractor).__name__
        if name not in EXTRACTORS or extractor.sampling_rate != SAMPLE_RATE:
            raise ValueError(f"{model.config.model_type}: feature extractor {name} at {extractor.sampling_rate} Hz; "
                             f"expected one of {EXTRACTORS} at {SAMPLE_RATE} Hz")
        self.model, self.extractor = model, extractor
        self.fbank = model.main_input_name == "input_features"
        self.masked = self.fbank or bool(extractor.return_attention_mask)
        self.alone = (model.config.model_type in READS_PADDING
                      or getattr(model.config, "feat_extract_norm", "layer") == "group")
        self.frame_shift = 1.0 / (self._frames(2 * SAMPLE_RATE) - self._frames(SAMPLE_RATE))
        low, high = 1, SAMPLE_RATE   # the shortest input with one frame
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if self._frames(mid) > 0 else (mid + 1, high)
        self.min_samples = low

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @property
    def hf_config(self):
        """The model's config with its extractor's settings, what an experiment keeps to rebuild it offline."""
        config = self.model.config.__class__.from_dict(self.model.config.to_dict())
        setattr(config, EXTRACTOR_KEY, self.extractor.to_dict())
        return config

    def enable_spec_augment(self, enabled: bool) -> None:
        """transformers' own time and feature masking (``mask_time_prob``, ...) while training."""
        self.model.config.apply_spec_augment = enabled

    def frontend_modules(self) -> list[nn.Module]:
        return [m for m in (getattr(self.model, "feature_extractor", None), self.model.feature_projection) if m is not None]

    def layer_modules(self) -> list[nn.Module]:
        return list(self.model.encoder.layers)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> EncoderOutput:
        if self.alone and not self.training and len(wav) > 1:
            return _stacked([self(wav[i : i + 1, :n], wav_lens[i : i + 1]) for i, n in enumerate(wav_lens.tolist())])
        inputs, mask, lens = self._inputs(wav, wav_lens)
        out = self.model(inputs, attention_mask=mask if self.masked else None, output_hidden_states=True)
        return EncoderOutput(list(out.hidden_states), lens)

    def _inputs(self, wav: torch.Tensor, wav_lens: torch.Tensor):
        """The model's input, its attention mask and the valid output frames per utterance."""
        if self.fbank:
            feats = self.extractor([w[:n].float().cpu().numpy() for w, n in zip(wav, wav_lens.tolist())],
                                   sampling_rate=SAMPLE_RATE, return_attention_mask=True, return_tensors="pt")
            mask = feats["attention_mask"].to(wav.device)
            return feats["input_features"].to(wav.device), mask, self.model._get_feat_extract_output_lengths(mask.sum(-1))
        valid = ~padding_mask(wav_lens, wav.shape[1])
        wav = wav.float()
        if self.extractor.do_normalize:
            n = wav_lens[:, None].clamp(min=1)
            mean = (wav * valid).sum(1, keepdim=True) / n
            var = (((wav - mean) * valid) ** 2).sum(1, keepdim=True) / n
            wav = (wav - mean) / torch.sqrt(var + 1e-7)
        wav = wav.masked_fill(~valid, self.extractor.padding_value)
        return wav, valid.long(), self.model._get_feat_extract_output_lengths(wav_lens).long()

    def _frames(self, num_samples: int) -> int:
        """Valid output frames of one utterance of ``num_samples`` samples."""
        if not self.fbank:
            return int(self.model._get_feat_extract_output_lengths(torch.tensor(num_samples)))
        try:
            with warnings.catch_warnings():   # a single 25-ms window has no variance to normalize by
                warnings.simplefilter("ignore", RuntimeWarning)
                mask = self.extractor(np.zeros(num_samples, np.float32), sampling_rate=SAMPLE_RATE,
                                      return_attention_mask=True)["attention_mask"]
        except ValueError:   # shorter than one analysis window
            return 0
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(int(np.sum(mask)))))


def _stacked(outs: list[EncoderOutput]) -> EncoderOutput:
    """Single-utterance outputs as one batch, states zero-padded to the longest."""
    most = max(o.last.shape[1] for o in outs)
    states = [torch.cat([nn.functional.pad(o.hidden_states[k], (0, 0, 0, most - o.last.shape[1])) for o in outs])
              for k in range(len(outs[0].hidden_states))]
    return EncoderOutput(states, torch.cat([o.lengths for o in outs]))


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def speech_config(name_or_dir: str, values: dict | None = None):
    """The transformers config of a hub id or directory (with ``values`` set), checked to be a supported family."""
    from transformers import AutoConfig

    name_or_dir = os.path.expanduser(name_or_dir)
    try:
        config = AutoConfig.from_pretrained(name_or_dir)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{name_or_dir}: not a transformers model directory or hub id ({_first_line(e)})") from None
    _check_family(config.model_type, name_or_dir)
    return _with_values(config, values or {}, f"{name_or_dir}")


def family_config(model_type: str, values: dict | None = None):
    """A random init's config: ``model_type``'s defaults with ``values`` set."""
    from transformers import AutoConfig

    _check_family(model_type, "model.hf.model_type")
    return _with_values(AutoConfig.for_model(model_type), values or {}, model_type)


def _check_family(model_type: str, where: str) -> None:
    if model_type not in FAMILIES:
        raise ValueError(f"{where}: model_type {model_type!r} is not a supported speech encoder; supported: "
                         f"{', '.join(FAMILIES)}")


def _with_values(config, values: dict, where: str):
    unknown = sorted(k for k in values if not hasattr(config, k))
    if unknown:
        raise ValueError(f"model.hf.config: {unknown} are not fields of {type(config).__name__} ({where})")
    # through from_dict, so that fields derived from others (num_feat_extract_layers from conv_dim) follow them
    return type(config).from_dict({**config.to_dict(), **values})


def default_extractor(config):
    """The extractor of a random init: what the pretrained checkpoints of its family use."""
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2FeatureExtractor

    if config.model_type == "wav2vec2-bert":
        return SeamlessM4TFeatureExtractor()
    return Wav2Vec2FeatureExtractor(return_attention_mask=getattr(config, "feat_extract_norm", "layer") == "layer")


def _extractor(name_or_dir: str):
    from transformers import AutoFeatureExtractor

    try:
        return AutoFeatureExtractor.from_pretrained(name_or_dir)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{name_or_dir}: no usable feature extractor (preprocessor_config.json: {_first_line(e)})") from None


def load_hf_encoder(name_or_dir: str, config, random_init: bool = False) -> HFSpeechEncoder:
    """The model of ``config`` (:func:`speech_config` of ``name_or_dir``) with its weights, or with
    ``random_init`` its architecture only, and its feature extractor."""
    extractor = _extractor(name_or_dir)
    if getattr(config, "add_adapter", False):
        # a fine-tuned head's subsampling adapter: the states are the transformer layers', before it
        log.info("%s: its adapter (add_adapter) is left out; the states are the transformer layers'", name_or_dir)
        config.add_adapter = False
    if random_init:
        from transformers import AutoModel

        return HFSpeechEncoder(AutoModel.from_config(config), extractor)
    return HFSpeechEncoder(_pretrained(name_or_dir, config), extractor)


def _pretrained(name_or_dir: str, config) -> nn.Module:
    """The base model's weights; missing or mis-shaped ones are an error, another task's head is left out."""
    from transformers import AutoModel

    try:
        model, info = AutoModel.from_pretrained(name_or_dir, config=config, output_loading_info=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{name_or_dir}: weights do not load into {config.model_type} ({_first_line(e)})") from None
    bad = {k: v[:5] for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if bad:
        raise ValueError(f"{name_or_dir}: {config.model_type} weights do not match its config: {bad}")
    if info["unexpected_keys"]:
        log.info("%s: %d weights of other parts left out (e.g. %s)", name_or_dir, len(info["unexpected_keys"]),
                 info["unexpected_keys"][0])
    return model


def saved_speech_encoder(config_json: Path, fallback_extractor=None) -> HFSpeechEncoder:
    """The architecture an experiment saved (``encoder_config.json``: the model's config with its extractor's
    settings), random weights to be loaded from a checkpoint; nothing is downloaded. ``fallback_extractor``: for
    a file written before the extractor was kept there (wav2vec2 experiments read the raw waveform)."""
    from transformers import AutoModel, CONFIG_MAPPING

    raw = json.loads(Path(config_json).read_text(encoding="utf-8"))
    saved = raw.pop(EXTRACTOR_KEY, None)
    _check_family(raw.get("model_type"), str(config_json))
    if saved is None and fallback_extractor is None:
        raise ValueError(f"{config_json}: no {EXTRACTOR_KEY!r} entry (the settings of the model's feature extractor)")
    if saved is not None:
        import transformers

        kind = saved.get("feature_extractor_type")
        if kind not in EXTRACTORS:
            raise ValueError(f"{config_json}: {EXTRACTOR_KEY}.feature_extractor_type {kind!r}; expected one of {EXTRACTORS}")
        fallback_extractor = getattr(transformers, kind).from_dict(saved)
    config = CONFIG_MAPPING[raw["model_type"]].from_dict(raw)
    return HFSpeechEncoder(AutoModel.from_config(config), fallback_extractor)


def tiny_config(model_type: str) -> dict:
    """Sizes of a random-init miniature of ``model_type`` (dry runs, tests): 2 layers of width 32."""
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    if model_type == "wav2vec2-bert":
        return {**sizes, "output_hidden_size": 32}
    return {**sizes, "conv_dim": [32] * 7}
