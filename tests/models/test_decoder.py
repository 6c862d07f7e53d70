"""The attention decoder: cached next-token logits equal the full forward, and Whisper's decoder imported
from CTranslate2 gives transformers' own Whisper decoder logits (teacher forced)."""

import json

import pytest
import torch

from speechalign.models.decoder import AttentionDecoder

WHISPER_LIKE = dict(activation="gelu", learned_positions=True, scale_embedding=False, tie_output=True)


@pytest.mark.parametrize("kind", [{}, WHISPER_LIKE], ids=["char", "whisper-like"])
def test_next_token_logits_equal_full_forward(kind):
    torch.manual_seed(0)
    dec = AttentionDecoder(50, 32, 2, 4, 64, dropout=0.1, max_len=40, **kind).eval()
    if kind:
        torch.nn.init.normal_(dec.pos)
    memory = torch.randn(3, 17, 32)
    pad = torch.zeros(3, 17, dtype=torch.bool)
    pad[1, 12:] = True
    pad[2, 5:] = True
    tokens = torch.randint(0, 50, (3, 9))
    with torch.no_grad():
        full = dec(tokens, memory, pad)[:, -1]
        cached = dec.next_token_logits(tokens, dec.memory_kv(memory), pad)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", [{}, WHISPER_LIKE], ids=["char", "whisper-like"])
def test_restricted_output_rows_equal_the_masked_full_projection(kind):
    torch.manual_seed(0)
    dec = AttentionDecoder(50, 32, 1, 4, 64, dropout=0.0, **kind).eval()
    x = torch.randn(2, 3, 32)
    full = dec.project(x)
    allowed = torch.zeros(50, dtype=torch.bool)
    allowed[[1, 7, 8, 30, 49]] = True
    dec.allowed = allowed
    got = dec.project(x)
    assert torch.isinf(got[..., ~allowed]).all() and (got[..., ~allowed] < 0).all()
    torch.testing.assert_close(got[..., allowed], full[..., allowed], atol=1e-6, rtol=1e-6)


def test_imported_whisper_decoder_matches_transformers(tmp_path):
    pytest.importorskip("ctranslate2", reason="the CTranslate2 converter builds the model.bin to import")
    from safetensors.torch import load_file
    from transformers import WhisperForConditionalGeneration

    from speechalign.models.ct2_import import import_whisper
    from tests.tiny_whisper import convert_to_ct2, make_tiny_whisper

    hf_dir = make_tiny_whisper(tmp_path)
    out = import_whisper(convert_to_ct2(hf_dir, tmp_path / "ct2"), tmp_path / "imported")
    dec = AttentionDecoder(**json.loads((out / "decoder.json").read_text()), dropout=0.0).eval()
    dec.load_state_dict(load_file(str(out / "decoder.safetensors")), strict=True)
    hf = WhisperForConditionalGeneration.from_pretrained(str(hf_dir)).eval()
    torch.manual_seed(1)
    memory = torch.randn(2, 30, hf.config.d_model)
    tokens = torch.randint(0, hf.config.vocab_size, (2, 7))
    with torch.no_grad():
        ref = hf.proj_out(hf.model.decoder(input_ids=tokens, encoder_hidden_states=memory).last_hidden_state)
        ours = dec(tokens, memory, torch.zeros(2, 30, dtype=torch.bool))
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() < 1e-3
