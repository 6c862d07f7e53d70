"""speechalign compare ablation: rows from experiment dirs (config levers, last validation, a decode report)."""

import yaml

from speechalign.cli import main
from speechalign.config import load_config, save_config


def _fake_run(root, name, overrides, r1, cer, last_valid=200, audio=None):
    exp = root / name
    save_config(load_config(None, [f"data.train=[{{cuts: [d/goo-gi_cuts_train.jsonl.gz, d/kasu100_cuts_train.jsonl.gz]}}]",
                                   *overrides]), exp / "config.yaml")
    for step, valid in ((100, {"valid_step": 100, "valid_r1": {4: 1.0, 5: 2.0}}), (200, None)):
        d = exp / "checkpoints" / f"step-{step}"
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"")
        metrics = {"step": step, "train_compute_s": 60.0 * step / 100, "train_data_wait_s": 6.0 * step / 100}
        if audio is not None:
            metrics["train_audio_s"] = audio * step / 100
        if valid:
            metrics.update(valid)
        if step == last_valid:
            metrics.update({"valid_step": step, "valid_r1": r1})
        (d / "metrics.yaml").write_text(yaml.safe_dump(metrics))
    (exp / "decode" / "avg").mkdir(parents=True)
    (exp / "decode" / "avg" / "cer-dev-attention_beam.tsv").write_text(
        "# header\ndialect\tCER%\tutts\n" + "".join(f"{d}\t{c}\t1\n" for d, c in cer.items()))
    return exp


def test_ablation_rows_read_levers_validation_and_cer(tmp_path, capsys):
    a = _fake_run(tmp_path, "full", ["model.guard.kind=none"], {4: 40.0, 5: 50.5}, {"Mandarin": 9.5, "overall": 30.0})
    b = _fake_run(tmp_path, "lora", ["model.lora.rank=8", "model.decoder.pretrained=w", "model.guard.kind=distill",
                                     "model.guard.weight=0.3", "model.decoder.targets=translation",
                                     "model.decoder.prompt=variety"],
                  {4: 45.0, 5: 55.25}, {"Hakka": 40.0, "overall": 35.0})
    c = _fake_run(tmp_path, "tail", ["model.encoder=whisper", "model.whisper.tail_seconds=3", "optim.encoder_lr=1e-5", "optim.decoder_lr=2e-5",
                                     "model.ctc_weight=0.3", "model.decoder.label_smoothing=0", "model.decoder.dropout=0",
                                     "model.decoder.pretrained=w", "model.decoder.train_vocab=targets"],
                  {4: 41.0, 5: 51.0}, {"Mandarin": 50.0, "overall": 60.0}, last_valid=100)
    d = _fake_run(tmp_path, "packed", ["model.encoder=whisper", "model.whisper.length_mode=pad30", "data.pack.window=30",
                                       "data.pack.single_share=0.1", "data.oversample={Mandarin: 5}",
                                       "data.pack.timestamp_share=0.5", "data.pack.apart=[Mandarin]", "model.decoder.pretrained=whisper",
                                       "model.ctc_weight=0.3", "model.ctc_encoder_grad=0.05",
                                       "model.ctc_encoder_grad_ramp={to: 0.5, start: 100, end: 200}"],
                  {4: 42.0, 5: 52.0}, {"Mandarin": 12.0, "overall": 40.0}, audio=1320.0)
    (a / "decode" / "wise-decoder-0.7").mkdir()
    (a / "decode" / "wise-decoder-0.7" / "cer-dev-attention_beam.tsv").write_text(
        "# header\ndialect\tCER%\tutts\n" + "Mandarin\t7.5\t1\noverall\t31.0\t1\n")
    main(["compare", "ablation", str(a), str(b), str(c), f"{a}@wise-decoder-0.7", str(d), "--cer", "avg/cer-dev-attention_beam.tsv",
          "--out", str(tmp_path / "t"), "--order", "Mandarin"])
    rows = [line.split("\t") for line in (tmp_path / "t.tsv").read_text(encoding="utf-8").splitlines()]
    header, full, lora, tail, wise, packed = rows
    assert header == ["run", "targets", "trained", "guard", "CTC weight / smoothing / decoder dropout",
                      "lr (encoder / decoder)", "memory", "data", "R@1 L4", "R@1 L5", "Mandarin", "Hakka", "overall",
                      "steps", "minutes", "s / step", "audio s / s"]
    # 200 steps in 120 s of compute + 12 s of data wait; no audio count (a run from before the trainer kept one)
    assert full == ["full", "transcript", "layers 0+ in full", "none", "1 / 0.1 / 0.1", "0.001 / 0.001", "-",
                    "goo-gi+kasu100", "40.0", "50.5", "9.5", "n/a", "30.0", "200", "2.2", "0.66", "n/a"]
    assert packed[1] == "transcript, full softmax" and full[1] == "transcript"   # full: no Whisper decoder
    assert tail[1] == "transcript"                                                 # restricted softmax
    assert packed[4] == "0.3 (encoder x0.05 -> x0.5 over steps 100-200) / 0.1 / 0.1"
    assert packed[6:8] == ["pad30, packed 30 s (mixed, 10% single, 50% timestamped, Mandarin apart)",
                           "goo-gi+kasu100, Mandarin x5"]
    assert packed[-2:] == ["0.66", "20.0"]   # 2,640 s of audio in 132 s
    assert lora[1:4] == ["translation (not ASR-only), variety prompt, full softmax", "LoRA r8", "distill 0.3"] and lora[7] == "goo-gi+kasu100"
    assert lora[8:10] == ["45.0", "55.2"] and lora[10] == "n/a"
    assert tail[4:7] == ["0.3 / 0 / 0", "1e-05 / 2e-05", "trim + 3 s silence"]
    assert tail[8:10] == ["41.0 (step 100)", "51.0 (step 100)"]  # validated before its last checkpoint
    assert wise[0] == "full @ wise-decoder-0.7" and wise[3] == "wise-decoder-0.7"
    assert wise[8:13] == ["40.0", "50.5", "7.5", "n/a", "31.0"]
    assert str(tmp_path / "t.md") in capsys.readouterr().out
