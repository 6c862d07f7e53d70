"""The README.md model card of an exported model: data, recipe, measured results and usage code.

The usage code blocks are complete programs (tests execute them against the exported directory), so
what the card tells a reader to run is what was checked to reproduce speechalign's numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

from speechalign.config import objective

_LOAD = {
    "whisper": '''import numpy as np
import torch
from safetensors.torch import load_file
from transformers import WhisperFeatureExtractor
{encoder_import}

model_dir = {model_dir!r}
extractor = WhisperFeatureExtractor.from_pretrained(model_dir)
encoder = {encoder_load}.eval()


@torch.no_grad()
def hidden_states(wav: np.ndarray) -> list[torch.Tensor]:
    """One 16-kHz mono float32 utterance -> num_layers + 1 tensors (frames, d_model): the input embedding,
    then each layer (the last after the final layer norm), {frames}."""
{tail}    feats = extractor(wav, sampling_rate=16000, return_tensors="pt").input_features  # (1, n_mels, 3000): 30 s
    n = len(wav) // 160      # real 10-ms feature frames
    t = (n + 1) // 2         # real 20-ms encoder frames
''',
    "transformers": '''import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoFeatureExtractor, AutoModel

model_dir = {model_dir!r}
extractor = AutoFeatureExtractor.from_pretrained(model_dir)   # the input this model was trained on
encoder = AutoModel.from_pretrained(model_dir).eval()


@torch.no_grad()
def hidden_states(wav: np.ndarray) -> list[torch.Tensor]:
    """One 16-kHz mono float32 utterance -> num_layers + 1 tensors (frames, hidden_size): the input of the
    first layer, then each layer."""
    inputs = extractor(wav, sampling_rate=16000, return_tensors="pt")
    states = encoder(**inputs, output_hidden_states=True).hidden_states
    # w2v-BERT's extractor pads an odd count of its stacked log-mel frames by one; its mask marks the real ones
    n = int(inputs["attention_mask"].sum()) if "input_features" in inputs else states[0].shape[1]
    return [h[0, :n] for h in states]
''',
    "conformer": '''import numpy as np
import torch
from safetensors.torch import load_file
from speechalign.models.export import load_hf_export   # transformers has no such conformer

model_dir = {model_dir!r}
encoder, _, _ = load_hf_export(model_dir)


@torch.no_grad()
def hidden_states(wav: np.ndarray) -> list[torch.Tensor]:
    """One 16-kHz mono float32 utterance -> num_layers + 1 tensors (frames, d_model): the subsampled
    input, then each conformer layer, real frames only."""
    out = encoder(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
    return [h[0, : int(out.lengths[0])] for h in out.hidden_states]
''',
}

_CODE = {"wav2vec2": "transformers", "hf": "transformers"}   # encoders whose card code is plain transformers

_WHISPER_PAD30 = '''    # pad30 (as Whisper and this model were trained): the whole 30-s window, which the CTC head reads;
    # the utterance's own frames are the first t (what speechalign's embeddings pool)
    states = encoder(feats, output_hidden_states=True).hidden_states
    return [h[0] for h in states]
'''

_WHISPER_TRIM = '''    # trim (as this model was trained): only the real frames, positional table sliced to their number
    x = torch.nn.functional.gelu(encoder.conv1(feats[..., :n]))
    x = torch.nn.functional.gelu(encoder.conv2(x)).transpose(1, 2)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    states = []
    for layer in encoder.layers:
        states.append(x)
        x = layer(x, None, layer_head_mask=None)[0]
    states.append(encoder.layer_norm(x))
    return [h[0] for h in states]
'''

_CTC = '''ctc = load_file(f"{model_dir}/ctc.safetensors")
tokens = [line.rsplit(" ", 1)[0] for line in open(f"{model_dir}/tokens.txt", encoding="utf-8").read().splitlines()]


def transcribe(wav: np.ndarray) -> str:
    """CTC greedy decoding, as `speechalign transcribe`: best path, repeats merged, <blank> (0) and
    <sos/eos> (2) dropped, <unk> (1) kept."""
    log_probs = torch.log_softmax(hidden_states(wav)[-1] @ ctc["weight"].T + ctc["bias"], dim=-1)
    ids = torch.unique_consecutive(log_probs.argmax(-1)).tolist()
    return "".join(tokens[i] for i in ids if i == 1 or i > 2)
'''

_ONNX = '''import numpy as np
import onnxruntime as ort

model_dir = {model_dir!r}
MIN_SAMPLES, MAX_SAMPLES = {min_samples}, {max_samples}
session = ort.InferenceSession(f"{{model_dir}}/model.onnx", providers=["CPUExecutionProvider"])
tokens = [line.rsplit(" ", 1)[0] for line in open(f"{{model_dir}}/tokens.txt", encoding="utf-8").read().splitlines()]


def transcribe_batch(wavs: list[np.ndarray]) -> list[str]:
    """16-kHz mono float32 utterances -> CTC greedy transcripts (best path, repeats merged, <blank> (0)
    and <sos/eos> (2) dropped). Padding is masked inside the model, so batching changes nothing."""
    lens = np.array([len(w) for w in wavs], dtype=np.int64)
    if MAX_SAMPLES and lens.max() > MAX_SAMPLES:
        raise ValueError(f"this model takes at most {{MAX_SAMPLES / 16000:.0f}} s of audio")
    batch = np.zeros((len(wavs), max(lens.max(), MIN_SAMPLES)), dtype=np.float32)
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    log_probs, lengths = session.run(["log_probs", "lengths"], {{"wav": batch, "wav_lens": lens}})
    texts = []
    for lp, n in zip(log_probs, lengths):
        best = lp[:n].argmax(-1)
        ids = [int(b) for k, b in enumerate(best) if k == 0 or b != best[k - 1]]
        texts.append("".join(tokens[i] for i in ids if i == 1 or i > 2))
    return texts
'''


# The encoder alone, or the encoder of the whole WhisperForConditionalGeneration (WhisperEncoder.from_pretrained
# would not find its weights under the model.encoder. prefix and start from random ones).
_ENCODER_LOAD = {
    False: {"encoder_import": "from transformers.models.whisper.modeling_whisper import WhisperEncoder",
            "encoder_load": "WhisperEncoder.from_pretrained(model_dir)"},
    True: {"encoder_import": "from transformers import WhisperForConditionalGeneration",
           "encoder_load": "WhisperForConditionalGeneration.from_pretrained(model_dir).get_encoder()"},
}

_PIPELINE = '''import logging

import numpy as np
from transformers import pipeline

model_dir = {model_dir!r}
# Whisper's generate applies the suppression list below itself; transformers' generic generate then restores it
# from the model's defaults and prints all of it (tens of thousands of ids) as a warning. The output is the same.
logging.getLogger("transformers.generation.utils").setLevel(logging.ERROR)
# generation_config.json prompts <|startoftranscript|><|{language}|><|transcribe|><|notimestamps|>, as the decoder was
# trained, and suppresses only what speechalign's decoding suppresses.
asr = pipeline("automatic-speech-recognition", model=model_dir)


def transcribe_whisper(wav: np.ndarray, **generate_kwargs) -> str:
    """One 16-kHz mono float32 utterance (up to 30 s) -> the Whisper decoder's transcript, greedy
    (speechalign's attention_beam at beam 1); the pipeline's own default is beam search with 5 beams."""
    generate_kwargs = {{"num_beams": 1, **generate_kwargs}}
    return asr({{"raw": wav, "sampling_rate": 16000}}, generate_kwargs=generate_kwargs)["text"]
'''

_FASTER_WHISPER = '''ct2-transformers-converter --model {model_dir} --output_dir {model_dir}-ct2 \\
    --copy_files tokenizer.json preprocessor_config.json
'''

_FASTER_WHISPER_PY = '''import json

import numpy as np


def transcribe_faster_whisper(audio, ct2_dir: str = model_dir + "-ct2", compute_type: str = "int8") -> str:
    """A file name or 16-kHz mono float32 array -> faster-whisper's transcript of the converted model,
    decoded as speechalign decodes (greedy, nothing suppressed that training did not exclude). Short audio
    is padded to 30 s as a waveform, as transformers and speechalign pad it: faster-whisper would pad the
    log-mel features instead, an input the model never saw (on goo-gi it then stops after a word or two)."""
    from faster_whisper import WhisperModel, decode_audio

    wav = decode_audio(audio) if isinstance(audio, str) else np.asarray(audio, dtype=np.float32)
    wav = np.pad(wav, (0, max(0, 480000 - len(wav))))
    model = WhisperModel(ct2_dir, device="cpu", compute_type=compute_type)
    suppress = json.load(open(f"{{model_dir}}/generation_config.json")).get("suppress_tokens") or []
    segments, _ = model.transcribe(wav, language={language!r}, beam_size=1, temperature=0.0,
                                   without_timestamps=True, suppress_blank=False, suppress_tokens=suppress,
                                   condition_on_previous_text=False, no_speech_threshold=None)
    return "".join(s.text for s in segments)
'''


def usage_code(fmt: str, meta: dict, model_dir: str) -> list[str]:
    """The card's python blocks for this export, in order (each runs after the previous ones)."""
    if fmt == "onnx":
        onnx = meta["onnx"]
        return [_ONNX.format(model_dir=model_dir, min_samples=onnx["min_samples"], max_samples=onnx["max_samples"])]
    tail = round(meta.get("tail_seconds", 0.0) * 16000)
    frames = ("the utterance's frames and the silence appended to it" if tail else
              "all 1,500 frames of the 30-s window (the utterance's own are the first t)"
              if meta.get("length_mode") == "pad30" else "real frames only")
    whole = "whisper_decoder" in meta
    load = _LOAD[_CODE.get(meta["encoder"], meta["encoder"])].format(model_dir=model_dir, frames=frames, **_ENCODER_LOAD[whole], tail=(
        f"    wav = np.concatenate([wav, np.zeros({tail}, np.float32)])  # the silence this model appends\n"
        "    wav = np.concatenate([wav, np.zeros(160 * (len(wav) // 160 % 2), np.float32)])  # even frame count\n"
        if tail else ""))
    if meta["encoder"] == "whisper":
        load += _WHISPER_TRIM if meta["length_mode"] == "trim" else _WHISPER_PAD30
    if whole:
        language = meta["whisper_decoder"]["language"]
        return [_PIPELINE.format(model_dir=model_dir, language=language),
                _FASTER_WHISPER_PY.format(language=language), load, _CTC]
    return [load, _CTC]


def _table_files(exp_dir: Path, checkpoint: str) -> tuple[list[Path], list[str]]:
    """CER tables of the exported checkpoint, and the other checkpoints that have some."""
    root = exp_dir / "decode"
    mine = sorted((root / checkpoint).glob("cer-*.md")) if (root / checkpoint).is_dir() else []
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != checkpoint
                    and any(p.glob("cer-*.md"))) if root.is_dir() else []
    return mine, others


def _demote(markdown: str) -> str:
    """Included tables' headings one level below the card's sections."""
    return "\n".join("###" + line.lstrip("#") if line.startswith("#") else line for line in markdown.splitlines())


def model_card(fmt: str, meta: dict, cfg, exp_dir: Path, checkpoint: str, results, model_dir: str) -> str:
    """The card; ``model_dir`` is where the export is written (the usage code loads from there)."""
    enc, data, m, o, t = meta["encoder"], cfg.data, cfg.model, cfg.optim, cfg.train
    sub = getattr(m, enc)
    source = getattr(sub, "pretrained", None)
    whole = meta.get("whisper_decoder")
    if whole:
        lines = ["# speechalign fine-tuned Whisper (transformers WhisperForConditionalGeneration + CTC head)", "",
                 f"Exported by `speechalign export --format {fmt}` from `{exp_dir}`, checkpoint `{checkpoint}`: "
                 f"Whisper's encoder ({meta['num_layers']} layers, dimension {meta['dim']}) and decoder "
                 f"({whole['decoder_layers']} layers, {whole['vocab_size']} BPE tokens), fine-tuned together with a "
                 f"CTC head over {meta['ctc']['vocab_size']} characters for Chinese dialect ASR, and used for "
                 "cross-dialect speech retrieval from any encoder layer. A complete transformers "
                 "`WhisperForConditionalGeneration` directory (config, weights, `generation_config.json`, "
                 "`WhisperProcessor`); the CTC head is `ctc.safetensors` beside it. 16-kHz mono input.", ""]
    else:
        kind = meta.get("model_type", enc)
        lines = [f"# speechalign {kind} CTC model ({'transformers' if fmt == 'hf' else 'ONNX'})", "",
                 f"Exported by `speechalign export --format {fmt}` from `{exp_dir}`, checkpoint `{checkpoint}`: "
                 f"a {kind} encoder ({meta['num_layers']} layers, dimension {meta['dim']}, one output frame per "
                 f"{meta['frame_shift'] * 1000:.0f} ms) with a CTC head over {meta['ctc']['vocab_size']} characters, "
                 "trained for Chinese dialect ASR with speechalign and used for cross-dialect "
                 "speech retrieval from any layer. 16-kHz mono input.", ""]
    lines += [f"Objective: {objective(cfg)}.", "",
              "## Training data", "", "From the experiment's `config.yaml` (copied here as `speechalign_config.yaml`):", ""]
    for c in data.train:
        lines.append(f"- train (weight {c.weight:g}): " + ", ".join(f"`{p}`" for p in (c.cuts or [getattr(c, 'shar', None)])))
    lines += [f"- dev: {', '.join(f'`{p}`' for p in data.dev) or 'none'}",
              f"- utterances {data.min_utt_duration:g}-{data.max_utt_duration:g} s, SpecAugment "
              f"{'on' if data.spec_augment else 'off'}, speed perturbation {data.speed_perturb or 'off'}", ""]
    prompt = ", prompted with each cut's variety label" if m.decoder.prompt == "variety" else ""
    decoder = ("none" if m.decoder.num_layers == 0 and not m.decoder.pretrained else
               f"{'Whisper pretrained' if m.decoder.pretrained else f'{m.decoder.num_layers}-layer'} attention "
               f"decoder{prompt}, CTC weight {m.ctc_weight:g} "
               f"({'exported as the Whisper decoder' if whole else 'the decoder is not exported'})")
    lines += ["## Recipe", "",
              f"- encoder: {enc}, initialized from `{source}`" if source else f"- encoder: {enc}, random init",
              f"- loss: CTC{' + attention' if m.ctc_weight < 1 else ''}; attention branch: {decoder}",
              f"- AdamW, peak lr {o.lr:g}{f' (encoder {o.encoder_lr:g})' if o.encoder_lr else ''}, {o.warmup_steps} "
              f"warm-up steps, {o.schedule} decay, {t.max_steps} steps, batches of {data.max_duration:g} s of audio",
              ""]
    if enc == "whisper":
        lines.insert(-1, f"- Whisper length mode: `{meta['length_mode']}`"
                     + (f", {meta['tail_seconds']:g} s of silence appended to every utterance (the decoder and CTC "
                        "read those frames; embeddings leave them out)" if meta.get("tail_seconds") else ""))
    mine, others = _table_files(exp_dir, checkpoint)
    lines += ["## Results", "", "### CER (per dialect, micro-averaged)", ""]
    if mine:
        if whole:
            lines += [_reproducible(meta), ""]
        elif m.decoder.num_layers > 0 or m.decoder.pretrained:
            lines += ["Only the CTC modes (`ctc_greedy`, `ctc_prefix_beam`) can be reproduced from this export; the "
                      "attention modes used the decoder, which is not exported.", ""]
        for p in mine:
            lines += [_demote(p.read_text(encoding="utf-8").strip()), ""]
    else:
        lines += [f"Not measured for checkpoint `{checkpoint}` (no `decode/{checkpoint}/cer-*.md` in the experiment)"
                  + (f"; decoded checkpoints: {', '.join(others)}." if others else "."), ""]
    lines += ["### Cross-dialect retrieval (R@1)", ""]
    if results:
        for p in results:
            lines += [f"From `{p}`:", "", _demote(Path(p).read_text(encoding="utf-8").strip()), ""]
    else:
        lines += ["Not measured (no retrieval tables were given to `speechalign export --results`).", ""]
    lines += _usage(fmt, meta, model_dir)
    return "\n".join(lines).rstrip() + "\n"


def _reproducible(meta: dict) -> str:
    """Which measured modes this export reproduces, and on what input."""
    ctc = "`ctc_greedy` from the CTC head; "
    if meta["length_mode"] == "pad30":
        return (ctc + "`attention_beam` at beam 1 (greedy) from the Whisper decoder with transformers' `generate` or "
                "pipeline, which pad every utterance to a 30-s window as this model was trained. Beam search, "
                "`attention_rescoring` and `joint_beam` (CTC and decoder scores combined) are speechalign's own.")
    tail = (f", plus {meta['tail_seconds']:g} s of silence," if meta.get("tail_seconds") else "")
    return (ctc + f"the attention modes are **not** reproduced: this model was trained and measured on trimmed "
            f"input (`length_mode: trim`: the encoder reads the utterance's own frames{tail} and nothing else), "
            "while transformers' `WhisperFeatureExtractor`, pipeline and faster-whisper pad every input to a 30-s "
            "window, which the decoder reads differently (expect different, likely worse, transcripts than the "
            "attention rows above). `speechalign transcribe --mode attention_beam` on the experiment decodes as "
            "measured.")


def _usage(fmt: str, meta: dict, model_dir: str) -> list[str]:
    code = usage_code(fmt, meta, model_dir)
    enc = meta["encoder"]
    whole = meta.get("whisper_decoder")
    out = []
    if whole:
        prompt = ("The decoder was trained with the variety label of each non-Mandarin cut as Whisper's previous-"
                  "text prompt; give it with `generate_kwargs={\"prompt_ids\": asr.tokenizer.get_prompt_ids("
                  "\"Taiwanese Hokkien\", return_tensors=\"pt\")}`. " if whole.get("variety_prompt") else "")
        restricted = (f"It was trained on {whole['allowed_tokens']} of the {whole['vocab_size']} BPE tokens "
                      "(`train_vocab: targets`); the others' output logits were never trained, so "
                      "`generation_config.json` suppresses them (`suppress_tokens`), as speechalign's decoding "
                      "does. " if whole.get("allowed_tokens") else "")
        translation = ("The decoder was trained to write the Mandarin translation of the speech, not its "
                       "transcript. " if whole.get("targets") == "translation" else "")
        out += ["## Transcribing with transformers", "",
                "The directory is a `WhisperForConditionalGeneration`: `from_pretrained`, `generate` and "
                "`pipeline(\"automatic-speech-recognition\")` load it as they load openai/whisper-*. "
                f"{translation}{restricted}{prompt}" + _reproducible(meta), "",
                "```python", code[0].rstrip(), "```", "",
                "## faster-whisper (CTranslate2)", "",
                "Convert once (float32 weights; `--quantization int8` for a smaller model):", "",
                "```bash", _FASTER_WHISPER.format(model_dir=model_dir).rstrip(), "```", "",
                "then decode as speechalign does (faster-whisper's defaults add beam search, temperature "
                "fallback and its own token suppression):", "",
                "```python", code[1].rstrip(), "```", ""]
        code = code[2:]
    if fmt == "onnx":
        onnx = meta["onnx"]
        return ["## Usage (onnxruntime)", "",
                "`model.onnx` maps a zero-padded batch of waveforms `wav` (float32, batch x samples) and their lengths "
                "`wav_lens` (int64) to CTC log-probabilities `log_probs` (batch x frames x vocabulary) and the valid "
                f"frames per utterance `lengths`; the feature front end is inside the graph. Batches shorter than "
                f"{onnx['min_samples']} samples must be zero-padded to that length (lengths unchanged)"
                + (f"; at most {onnx['max_samples']} samples ({onnx['max_samples'] / 16000:.0f} s)." if onnx["max_samples"] else ".")
                + " `speechalign transcribe --onnx DIR audio.wav` runs it; in plain Python:", "",
                "```python", code[0].rstrip(), "```", ""]
    out += ["## Per-layer states with plain transformers", ""]
    if enc == "whisper":
        out += [("The encoder is the `WhisperForConditionalGeneration`'s (`get_encoder()`). " if whole else
                 "`WhisperEncoder.from_pretrained` loads the encoder (transformers' `WhisperModel` would need a "
                 "decoder). ") + "Lengths as speechalign computes them: `n = samples // 160` feature frames, "
                "`(n + 1) // 2` encoder frames. This model was trained with length mode "
                f"`{meta['length_mode']}`: "
                + ("`trim` runs only the real frames (the positional table sliced to their number; in a speechalign "
                   "batch padding is masked, so an utterance's states do not depend on its batch). transformers' "
                   "`WhisperEncoder.forward` only accepts 30-s inputs and ignores `attention_mask`, so the code runs "
                   "its modules on one utterance; `output_hidden_states=True` on the padded 30-s window gives the "
                   "`pad30` states instead, which differ."
                   if meta["length_mode"] == "trim" else
                   "`pad30` pads every utterance to 30 s, exactly as Whisper was trained; the decoder and the CTC "
                   "head read the whole window, embeddings pool the utterance's own first `t` frames; "
                   "`attention_mask` is not used (transformers ignores it for Whisper)."),
                "The log-mel spectrogram is `WhisperFeatureExtractor`'s; speechalign takes its per-utterance peak "
                "(the -8 floor) over the real frames only, which differs only if audio cut mid-sound makes the "
                "last, partial frame the loudest.", ""]
    elif enc in _CODE:
        out += [f"`AutoModel` ({meta.get('model_type', enc)}) with `output_hidden_states=True`, on what the exported "
                "`preprocessor_config.json` makes of one utterance: the input speechalign trained it on. speechalign "
                "reads a batch so that no utterance's states depend on the others (a model whose convolutions "
                "normalize over time, or whose layers read padding, reads each utterance alone); one utterance at a "
                "time, as below, gives the same states.", ""]
    else:
        out += ["transformers has no conformer of this kind (torchaudio `Conformer` layers, padding zeroed before "
                "each depthwise convolution), so the encoder is `encoder.safetensors` for speechalign's loader "
                "`load_hf_export`, which returns the same module training used (every layer's states and their "
                "valid lengths, for batches too).", ""]
    out += ["```python", code[0].rstrip(), "```", "",
            "The CTC head (`ctc.safetensors`: `weight` vocabulary x dimension, `bias`) reads the last state; "
            "`tokens.txt` lists `token id` per line (`<blank>` = 0), "
            + ("`ctc_tokenizer/vocab.json` is the same mapping, which `Wav2Vec2CTCTokenizer.from_pretrained"
               "(f\"{model_dir}/ctc_tokenizer\")`" if whole else
               "`vocab.json` is the same mapping, which `Wav2Vec2CTCTokenizer.from_pretrained`") + " loads too:", "",
            "```python", code[1].rstrip(), "```", ""]
    return out


def card_namespace(model_dir: Path, blocks: int | None = None) -> dict:
    """Run the python blocks of an exported model's card (``README.md``) in one namespace, as a reader would;
    ``blocks``: only the first that many."""
    card = (Path(model_dir) / "README.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    if not code:
        raise ValueError(f"{model_dir}/README.md: no python code blocks (not a speechalign export?)")
    namespace: dict = {}
    for block in code[:blocks]:
        exec(compile(block, str(Path(model_dir) / "README.md"), "exec"), namespace)
    return namespace

