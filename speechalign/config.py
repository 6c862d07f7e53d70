"""Typed experiment configuration: YAML into dataclasses that reject unknown keys.

``load_config(path, overrides=["optim.lr=1e-3"])`` reads a recipe; ``save_config`` writes the fully
resolved config beside a checkpoint, so decoding and embedding need only the experiment directory.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from speechalign.atomic import write_text


class ConfigError(ValueError):
    """A config file or override is malformed: unknown key, wrong type or missing value."""


@dataclass
class CorpusConfig:
    cuts: list[str] = field(default_factory=list)   # jsonl(.gz) cut manifests, read lazily
    shar: str | None = None             # or a lhotse Shar directory (speechalign export-shar)
    weight: float = 1.0                 # mixing weight when several corpora are given


@dataclass
class PackConfig:
    """Training cuts packed back to back into windows, the long-form format Whisper was pretrained on."""

    window: float = 0.0                 # seconds per window (Whisper: 30); 0 = off, every cut on its own
    gap: float = 0.3                    # seconds of silence between two cuts of a window
    single_share: float = 0.0           # share of windows that hold one cut alone (padded, as evaluation reads it)
    group: str = "mixed"                # "mixed" or "variety": a window holds cuts of one variety only
    apart: list[str] = field(default_factory=list)   # with group "mixed": varieties whose cuts share a window only
                                        # with their own variety (a guard on model.guard.varieties reads whole windows)
    # share of windows whose decoder target carries Whisper's timestamp tokens around each cut (its prefix then
    # leaves out <|notimestamps|>), as Whisper's long-form pretraining data did; needs a pretrained Whisper decoder
    timestamp_share: float = 0.0


@dataclass
class DataConfig:
    train: list[CorpusConfig] = field(default_factory=list)
    dev: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    max_duration: float = 60.0          # seconds of audio per batch
    num_buckets: int = 10
    min_utt_duration: float = 0.3
    max_utt_duration: float = 20.0
    speed_perturb: list[float] = field(default_factory=list)   # e.g. [0.9, 1.1]; empty = off
    spec_augment: bool = True
    shuffle: bool = True
    min_char_count: int = 1             # vocabulary: characters seen fewer times map to <unk>
    valid_max_duration: float = 120.0   # seconds per validation batch
    num_workers: int = -1               # DataLoader processes reading audio; -1 = per device (see docs/scaling.md)
    prefetch_factor: int = 2            # batches each worker reads ahead
    buffer_size: int = 10000            # cuts the bucketing sampler holds in memory
    features: str = "audio"             # the encoder's front end runs in: "audio" the model, "loader" the loader
                                        # workers, "precomputed" speechalign compute-features (lilcom)
    max_bad_fraction: float = 0.1       # unreadable items per epoch tolerated (dropped and counted) before stopping
    pack: PackConfig = field(default_factory=PackConfig)   # training batches of packed windows (max_duration
                                                           # then counts the audio of all windows of a batch)
    # Times per epoch a variety's usable training cuts are seen (e.g. {Mandarin: 5}: four more copies, with
    # their own ids); the share of a variety a model must keep, without a separate manifest.
    oversample: dict[str, int] = field(default_factory=dict)
    # k >= 2: the training stream places k utterances of one sentence (sentence_id) in k different varieties
    # next to each other, so a batch holds the positives of model.align; 0 = off (the plain shuffle)
    parallel: int = 0


@dataclass
class WhisperEncoderConfig:
    pretrained: str | None = None       # hub id or local dir; None = random init from the sizes below
    num_mel_bins: int = 80
    d_model: int = 384
    encoder_layers: int = 4
    encoder_attention_heads: int = 6
    encoder_ffn_dim: int = 1536
    max_source_positions: int = 1500
    length_mode: str = "trim"            # "trim" (real frames only) or "pad30" (faithful 30-s padding)
    tail_seconds: float = 0.0            # trim: silence appended to each utterance (the decoder's end marker)
    dropout: float = 0.0


@dataclass
class Wav2Vec2EncoderConfig:
    pretrained: str | None = None
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    conv_dim: list[int] = field(default_factory=lambda: [256, 256, 256, 256, 256, 256, 256])
    conv_stride: list[int] = field(default_factory=lambda: [5, 2, 2, 2, 2, 2, 2])
    conv_kernel: list[int] = field(default_factory=lambda: [10, 3, 3, 3, 3, 2, 2])
    hidden_dropout: float = 0.1
    mask_time_prob: float = 0.05


@dataclass
class HFEncoderConfig:
    """``model.encoder: hf``: a transformers speech encoder of any family but Whisper (``model.encoder: whisper``
    keeps its 30-s window and decoder options): hubert, wavlm, data2vec-audio, wav2vec2-bert, wav2vec2-conformer,
    wav2vec2 (MMS, XLS-R)."""
    pretrained: str | None = None        # hub id or local dir: its config, weights and feature extractor
    model_type: str | None = None        # the family; needed without pretrained (a random init, every --dry-run)
    # fields of the family's transformers config: a random init's sizes, or on a pretrained model what leaves its
    # weights' shapes alone (layerdrop, dropouts, mask_time_prob); a name the config class lacks is an error
    config: dict[str, typing.Any] = field(default_factory=dict)


@dataclass
class ConformerEncoderConfig:
    num_mel_bins: int = 80
    d_model: int = 144
    num_layers: int = 4
    num_heads: int = 4
    ffn_dim: int = 576
    kernel_size: int = 15
    dropout: float = 0.1
    subsampling_channels: int | None = None   # channels of the conv subsampling; None = d_model
    subsampling_rate: int = 4                 # 4 (25 frames/s) or 8 (12.5 frames/s, half the layer cost)


@dataclass
class DecoderConfig:
    num_layers: int = 0                  # 0 = no attention decoder (CTC only)
    num_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    label_smoothing: float = 0.1
    pretrained: str | None = None        # an imported Whisper dir: its decoder (and BPE vocabulary) is the branch
    language: str = "zh"                 # Whisper decoder prompt language
    targets: str = "transcript"          # "transcript" (ASR-only) or "translation": the attention branch learns the
                                         # cut's Mandarin translation (custom["translation"]), CTC its own characters
    train_vocab: str = "full"            # "full" or "targets": the training softmax covers only the BPE tokens of the
                                         # training targets (Whisper's 51,865 rows are mostly unused by Chinese text)
    prompt: str = "none"                 # "none" or "variety": a non-Mandarin cut's variety label is given to the
                                         # decoder as Whisper's previous-text prompt (an input, never a target), so
                                         # the plain Mandarin prompt is learned from Mandarin speech alone
    plain_varieties: list[str] = field(default_factory=lambda: ["Mandarin", "Taiwan Mandarin"])  # never prompted


@dataclass
class FreezeConfig:
    frontend: bool = False               # conv/feature front end
    first_layers: int = 0                # first K encoder layers
    encoder_steps: int = 0               # the whole encoder for the first N optimizer steps
    decoder_embedding: bool = False      # the attention decoder's token embedding (tied output layer)
    cache_states: bool = False           # compute the frozen front end + first_layers once per utterance and reuse
                                         # them (SpecAugment then masks the stored states instead of the features)


@dataclass
class LoraConfig:
    rank: int = 0                        # 0 = off (full fine-tuning of the unfrozen parts)
    alpha: float = 16.0
    dropout: float = 0.05
    encoder_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])
    decoder_modules: list[str] = field(default_factory=lambda: ["linear1", "linear2"])  # [] = decoder trained in full


GUARDS = ("none", "distill", "padded_teacher", "window_teacher")
WHISPER_TEACHERS = ("padded_teacher", "window_teacher")   # their teacher is all of pretrained Whisper


@dataclass
class GuardConfig:
    kind: str = "none"                   # "none", "distill": KL towards the frozen pretrained decoder's
                                         # distribution on the same encoder memory (needs decoder.pretrained), or
                                         # "padded_teacher": towards frozen pretrained Whisper reading the
                                         # utterance padded to 30 s (computed once per utterance, cached), or
                                         # "window_teacher": towards frozen pretrained Whisper reading the
                                         # student's own pad30 input (a packed window), computed live
    weight: float = 0.5                  # loss weight of the guard term
    temperature: float = 1.0
    varieties: list[str] = field(default_factory=list)   # the rows the term reads, by variety; [] = every row


ALIGNS = ("none", "pooled", "seqsim")


@dataclass
class AlignConfig:
    """A cross-dialect alignment term (the model is then not ASR-only): utterances of one sentence_id in
    different varieties are pulled together, the batch's other sentences pushed apart (InfoNCE)."""
    kind: str = "none"                   # "none"; "pooled": cosine of mean-pooled states of ``layer``; "seqsim": a
                                         # differentiable SeqSim F1 between frame states of ``layer`` (soft maximum
                                         # over frames), what the YuBao benchmark scores
    weight: float = 1.0                  # loss weight (the term is summed over utterances per batch item, as the
                                         # hybrid loss is summed over tokens)
    layer: int = 5                       # encoder hidden state (0 = input embedding, L = after layer L)
    temperature: float = 0.1             # InfoNCE temperature over the similarity
    frame_temperature: float = 0.05      # seqsim: temperature of the soft maximum (towards 0: the hard max)
    frame_stride: int = 2                # seqsim: frames averaged in groups of this many (cost grows with frames^2)


@dataclass
class RampConfig:
    """A value held until ``start``, moved linearly to ``to`` by ``end`` (training steps), then held."""
    to: float | None = None              # None = no ramp: the value stays where the recipe sets it
    start: int = 0
    end: int = 0


@dataclass
class ModelConfig:
    encoder: str = "conformer"           # a key of speechalign.models.ENCODERS
    whisper: WhisperEncoderConfig = field(default_factory=WhisperEncoderConfig)
    wav2vec2: Wav2Vec2EncoderConfig = field(default_factory=Wav2Vec2EncoderConfig)
    hf: HFEncoderConfig = field(default_factory=HFEncoderConfig)
    conformer: ConformerEncoderConfig = field(default_factory=ConformerEncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    ctc_weight: float = 1.0
    # Scale of the CTC loss's gradient into the encoder (the head always learns at full weight); below 1, a
    # cold CTC head's blank-plateau gradients cannot swamp what the pretrained decoder teaches the encoder.
    ctc_encoder_grad: float = 1.0
    # Raise that scale once the CTC head has left the blank plateau (packed windows: hold 0.05, then ramp).
    ctc_encoder_grad_ramp: RampConfig = field(default_factory=RampConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    align: AlignConfig = field(default_factory=AlignConfig)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 500
    schedule: str = "cosine"             # "cosine", "linear" or "noam" decay after warmup
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    accum_grad: int = 1
    encoder_lr: float | None = None      # peak lr of the encoder (None = lr): pretrained parts move slower
    decoder_lr: float | None = None      # peak lr of the attention decoder (None = lr)
    # layer-wise rates: encoder layer k of L at encoder_lr * decay ** (L - k), the rest of the encoder (front end,
    # positions, final norm) at encoder_lr * decay ** L; 1 = one rate for the whole encoder
    layer_lr_decay: float = 1.0


@dataclass
class TrainConfig:
    seed: int = 42
    max_steps: int = 1000
    max_epochs: int = 100
    max_minutes: float = 0.0             # wall-clock budget; 0 = none
    bf16: bool = False
    log_every: int = 20
    valid_every: int = 500
    valid_each_epoch: bool = True
    valid_at_start: bool = False         # validate the initial model too (a pretrained baseline on the curve)
    save_every: int = 500
    keep_last: int = 5
    nan_patience: int = 20               # abort after this many non-finite losses in a row
    device: str = "auto"                 # "auto", "cpu", "cuda"
    num_threads: int = 0                 # torch intra-op threads; 0 = library default
    valid_retrieval_layers: list[int] = field(default_factory=list)  # YuBao R@1 on dev at these layers
    valid_retrieval_center: bool = False  # subtract each site's mean frame before SeqSim


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def check_model(model: ModelConfig) -> None:
    """Cross-field rules of the model section, reported with the key to fix."""
    d = model.decoder
    for key, value, allowed in (("model.decoder.targets", d.targets, ("transcript", "translation")),
                                ("model.decoder.train_vocab", d.train_vocab, ("full", "targets")),
                                ("model.decoder.prompt", d.prompt, ("none", "variety")),
                                ("model.guard.kind", model.guard.kind, GUARDS),
                                ("model.align.kind", model.align.kind, ALIGNS)):
        if value not in allowed:
            raise ConfigError(f"{key}: expected one of {list(allowed)}, got {value!r}")
    if model.guard.kind != "none" and not d.pretrained:
        raise ConfigError(f"model.guard.kind={model.guard.kind}: the teacher is Whisper's pretrained decoder; set "
                          "model.decoder.pretrained")
    if model.guard.kind in WHISPER_TEACHERS and model.encoder != "whisper":
        raise ConfigError(f"model.guard.kind={model.guard.kind}: the teacher is pretrained Whisper; got model.encoder="
                          f"{model.encoder!r}")
    if model.guard.kind == "window_teacher" and model.whisper.length_mode != "pad30":
        raise ConfigError("model.guard.kind=window_teacher: the teacher reads the student's own input, which must be "
                          "Whisper's 30-s window; set model.whisper.length_mode=pad30 (or use padded_teacher)")
    if d.train_vocab == "targets" and not d.pretrained:
        raise ConfigError("model.decoder.train_vocab=targets: only a pretrained (BPE) decoder has unused output rows")
    if d.prompt == "variety" and not d.pretrained:
        raise ConfigError("model.decoder.prompt=variety: the prompt is Whisper's <|startofprev|> text; set "
                          "model.decoder.pretrained")
    if model.freeze.cache_states and model.freeze.encoder_steps:
        raise ConfigError("model.freeze.cache_states: the cached layers must stay frozen; unset model.freeze.encoder_steps")
    if model.freeze.cache_states and not model.freeze.frontend:
        raise ConfigError("model.freeze.cache_states: caches the frozen front end (+ first_layers); set model.freeze.frontend")
    if model.freeze.cache_states and (model.encoder != "whisper" or model.whisper.length_mode != "trim"):
        raise ConfigError("model.freeze.cache_states: implemented for the whisper encoder in length_mode=trim "
                          f"(got {model.encoder!r}, {model.whisper.length_mode!r})")
    if not 0.0 <= model.ctc_encoder_grad <= 1.0:
        raise ConfigError(f"model.ctc_encoder_grad: expected a scale in [0, 1], got {model.ctc_encoder_grad}")
    r = model.ctc_encoder_grad_ramp
    if r.to is not None and not (0.0 <= r.to <= 1.0 and 0 <= r.start <= r.end):
        raise ConfigError(f"model.ctc_encoder_grad_ramp: expected to in [0, 1] and 0 <= start <= end, got "
                          f"to={r.to}, start={r.start}, end={r.end}")
    if model.lora.rank < 0:
        raise ConfigError(f"model.lora.rank: expected >= 0, got {model.lora.rank}")
    if model.encoder == "hf" and not (model.hf.pretrained or model.hf.model_type):
        raise ConfigError("model.hf: set pretrained (a hub id or directory) or model_type (a random init)")
    a = model.align
    if a.kind != "none" and model.freeze.cache_states:
        raise ConfigError("model.align: reads encoder states the frozen-state cache skips; unset model.freeze.cache_states")
    if a.kind != "none" and not (a.weight > 0 and a.temperature > 0 and a.frame_temperature > 0 and a.layer >= 0
                                 and a.frame_stride >= 1):
        raise ConfigError(f"model.align: expected weight, temperature and frame_temperature > 0, layer >= 0 and "
                          f"frame_stride >= 1, got {a}")


def check_align_data(align: AlignConfig, data: DataConfig) -> None:
    """model.align needs positives in its batches: parallel utterances placed together (data.parallel)."""
    if data.parallel < 0 or data.parallel == 1:
        raise ConfigError(f"data.parallel: expected 0 (off) or k >= 2 varieties per sentence, got {data.parallel}")
    if data.parallel and data.pack.window and data.pack.group == "variety":
        raise ConfigError("data.parallel: a window of one variety holds no parallel pair; set data.pack.group=mixed")
    if align.kind != "none" and data.parallel < 2:
        raise ConfigError(f"model.align.kind={align.kind}: a batch needs utterances of one sentence in several "
                          "varieties; set data.parallel (e.g. 2)")


def check_guard_data(guard: GuardConfig, data: DataConfig) -> None:
    """Rules joining model.guard to the data section."""
    if guard.kind in WHISPER_TEACHERS and data.features != "audio":
        raise ConfigError(f"model.guard.kind={guard.kind}: the teacher reads the waveforms; set data.features=audio")
    p = data.pack
    if p.window and guard.kind == "padded_teacher":
        raise ConfigError("model.guard.kind=padded_teacher caches per utterance; data.pack makes new windows "
                          "every epoch (a packed run reads the padded format itself)")
    mixed = [v for v in guard.varieties if v not in p.apart]
    if guard.kind != "none" and p.window and p.group == "mixed" and mixed:
        raise ConfigError(f"model.guard.varieties: a mixed window has no single variety, so {mixed} would never be "
                          "guarded; add them to data.pack.apart (or set data.pack.group=variety)")


def check_data(data: DataConfig) -> None:
    """Cross-field rules of the data section, reported with the key to fix."""
    for i, c in enumerate(data.train):
        if bool(c.cuts) == bool(c.shar):
            raise ConfigError(f"data.train[{i}]: give exactly one of cuts (manifests) or shar (a Shar directory)")
    if data.features not in ("audio", "loader", "precomputed"):
        raise ConfigError(f"data.features: expected 'audio', 'loader' or 'precomputed', got {data.features!r}")
    if data.features == "precomputed" and data.speed_perturb:
        raise ConfigError("data.speed_perturb: cannot perturb precomputed features; use data.features=audio")
    p = data.pack
    if p.window:
        if not 0.0 < p.window <= 30.0 or p.gap < 0 or not 0.0 <= p.single_share <= 1.0:
            raise ConfigError(f"data.pack: expected 0 < window <= 30 s, gap >= 0 and 0 <= single_share <= 1, got {p}")
        if not 0.0 <= p.timestamp_share <= 1.0:
            raise ConfigError(f"data.pack.timestamp_share: expected a share in [0, 1], got {p.timestamp_share}")
        if p.group not in ("mixed", "variety"):
            raise ConfigError(f"data.pack.group: expected 'mixed' or 'variety', got {p.group!r}")
        if p.apart and p.group != "mixed":
            raise ConfigError("data.pack.apart: only mixed windows (data.pack.group=mixed) keep varieties apart")
        if data.features != "audio":
            raise ConfigError("data.pack: windows are joined as audio; set data.features=audio")
        if data.max_utt_duration > p.window:
            raise ConfigError(f"data.max_utt_duration={data.max_utt_duration} exceeds data.pack.window={p.window}")
    for variety, times in data.oversample.items():
        if times < 1:
            raise ConfigError(f"data.oversample.{variety}: expected a number of times >= 1, got {times}")
    if not 0.0 <= data.max_bad_fraction <= 1.0:
        raise ConfigError(f"data.max_bad_fraction: expected a fraction in [0, 1], got {data.max_bad_fraction}")


def _is_instance(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        return isinstance(value, dict) and all(_is_instance(k, key_type) and _is_instance(v, value_type)
                                               for k, v in value.items())
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _yaml_float(value):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; accept it where a float is expected."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def from_dict(cls, data, where: str = ""):
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        tp, key = hints[name], f"{where}.{name}" if where else name
        value = _yaml_float(value) if float in typing.get_args(tp) + (tp,) else value
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value or {}, key)
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            if not isinstance(value, list):
                raise ConfigError(f"{key}: expected a list, got {value!r}")
            kwargs[name] = [from_dict(typing.get_args(tp)[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        elif _is_instance(value, tp):
            kwargs[name] = float(value) if tp is float else value
        else:
            raise ConfigError(f"{key}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
    missing = [f.name for f in fields.values() if f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where or 'config'}: missing key(s) {missing}")
    return cls(**kwargs)


def apply_override(raw: dict, override: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested mapping in place."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected key.path=value")
    path, value = override.split("=", 1)
    keys = path.strip().split(".")
    node = raw
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {k} is not a section")
    try:
        node[keys[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {override!r}: value is not valid YAML ({_yaml_problem(e)})") from None


def _yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the problem and its 1-based line:column."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + (getattr(e, "problem", None) or str(e).splitlines()[0])


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> ExperimentConfig:
    raw = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config {path} not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: YAML syntax error at {_yaml_problem(e)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (model:, data:, ...), got {type(raw).__name__}")
    for o in overrides:
        apply_override(raw, o)
    try:
        cfg = from_dict(ExperimentConfig, raw)
        check_data(cfg.data)
        check_model(cfg.model)
        if not 0.0 < cfg.optim.layer_lr_decay <= 1.0:
            raise ConfigError(f"optim.layer_lr_decay: expected a factor in (0, 1], got {cfg.optim.layer_lr_decay}")
        check_guard_data(cfg.model.guard, cfg.data)
        check_align_data(cfg.model.align, cfg.data)
        if cfg.data.pack.window and cfg.model.decoder.targets == "translation":
            raise ConfigError("data.pack: packed windows learn transcripts; model.decoder.targets=translation is "
                              "not implemented for them")
        if cfg.data.pack.timestamp_share and not (cfg.data.pack.window and cfg.model.decoder.pretrained):
            raise ConfigError("data.pack.timestamp_share: timestamp tokens are Whisper's; they need packed windows "
                              "(data.pack.window) and a pretrained Whisper decoder (model.decoder.pretrained)")
        if cfg.data.pack.window and cfg.model.decoder.prompt == "variety" and cfg.data.pack.group != "variety":
            raise ConfigError("model.decoder.prompt=variety prompts a window with one label: set data.pack.group=variety")
        return cfg
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def training_data(cfg: ExperimentConfig) -> str:
    """The training corpora by name (manifest ``goo-gi_cuts_train.jsonl.gz`` -> goo-gi; a Shar dir by its name)."""
    names = [Path(c).name.split("_cuts_")[0] for corpus in cfg.data.train for c in corpus.cuts]
    names += [Path(corpus.shar).name for corpus in cfg.data.train if corpus.shar]
    return "+".join(names) or "none"


def objective(cfg: ExperimentConfig) -> str:
    """What a model was trained to do, as every report names it: "ASR-only", or "not ASR-only: ..." with what
    else it learned and from which data."""
    m, other = cfg.model, []
    if m.decoder.targets == "translation":
        other.append("the decoder learned Mandarin translations")
    if m.align.kind != "none":
        other.append(f"cross-dialect alignment ({m.align.kind} InfoNCE at layer {m.align.layer}, weight "
                     f"{m.align.weight:g}) on parallel sentences of {training_data(cfg)}, {cfg.data.parallel} "
                     "varieties per sentence")
    return "not ASR-only: " + "; ".join(other) if other else "ASR-only"


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path) -> None:
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))
