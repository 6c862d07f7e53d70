"""model.ctc_encoder_grad scales what the CTC loss teaches the encoder, and nothing else."""

import pytest
import torch

from speechalign.config import ConfigError, load_config
from speechalign.models.asr import build_model


def _grads(scale: float):
    cfg = load_config(None, ["model.conformer.d_model=32", "model.conformer.num_layers=1", "model.conformer.num_heads=2",
                             "model.conformer.ffn_dim=64", "model.conformer.dropout=0.0",
                             f"model.ctc_encoder_grad={scale}"])
    torch.manual_seed(0)
    model = build_model(cfg, vocab_size=12).train()
    wav = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    out = model(wav, torch.tensor([16000, 12000]), [[3, 4, 5], [6, 7]])
    out["loss"].backward()
    head = model.ctc.weight.grad.clone()
    encoder = torch.cat([p.grad.flatten() for p in model.encoder.parameters() if p.grad is not None])
    return float(out["loss"].detach()), head, encoder


def test_the_encoder_gets_the_scaled_gradient_and_the_head_and_loss_the_full_one():
    loss1, head1, enc1 = _grads(1.0)
    loss_q, head_q, enc_q = _grads(0.25)
    loss0, head0, enc0 = _grads(0.0)
    assert loss_q == pytest.approx(loss1) and loss0 == pytest.approx(loss1)
    torch.testing.assert_close(head_q, head1)
    torch.testing.assert_close(head0, head1)
    assert enc1.abs().sum() > 0
    torch.testing.assert_close(enc_q, 0.25 * enc1, rtol=1e-4, atol=1e-7)
    assert enc0.abs().max() == 0


def test_a_scale_outside_0_1_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="model.ctc_encoder_grad"):
        load_config(None, ["model.ctc_encoder_grad=2"])
