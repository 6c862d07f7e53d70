import pytest
import soundfile as sf
import numpy as np

from speechalign.config import load_config
from speechalign.decode.run import MODES, decode, transcribe
from speechalign.train.trainer import train
from tests.conftest import TONE_CHARS, tiny_train_overrides


@pytest.fixture(scope="module")
def tiny_exp(tone_corpus, tmp_path_factory):
    exp = tmp_path_factory.mktemp("exp")
    train(load_config(None, tiny_train_overrides(tone_corpus) + ["train.max_steps=30"]), exp)
    return exp


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_decodes_and_reports(tiny_exp, tone_corpus, mode):
    results = decode(tiny_exp, [tone_corpus["dev"]], mode=mode, beam=4)
    scorer = results["tones_dev"]
    assert set(scorer.groups) == {"A", "B"} and scorer.overall().utts == 8
    out = tiny_exp / "decode" / "latest"
    for name in (f"recogs-tones_dev-{mode}.txt", f"errs-tones_dev-{mode}.txt", f"cer-tones_dev-{mode}.tsv",
                 f"cer-tones_dev-{mode}.md"):
        assert (out / name).is_file()
    hyps = [line.split("\t")[3] for line in (out / f"recogs-tones_dev-{mode}.txt").read_text(encoding="utf-8").splitlines()[2:]]
    assert all(set(h) <= set(TONE_CHARS) for h in hyps)


@pytest.fixture(scope="module")
def untrained_exp(tone_corpus, tmp_path_factory):
    """Two steps: a decoder that does not end its hypotheses yet, as in a pipeline's dry run."""
    exp = tmp_path_factory.mktemp("untrained")
    train(load_config(None, tiny_train_overrides(tone_corpus) + ["train.max_steps=2"]), exp)
    return exp


@pytest.mark.parametrize("mode", ["attention_beam", "joint_beam"])
def test_max_length_caps_each_hypothesis_and_the_report_says_so(untrained_exp, tone_corpus, mode):
    out = untrained_exp / "decode" / "latest"

    def lengths() -> list[int]:
        lines = (out / f"recogs-tones_dev-{mode}.txt").read_text(encoding="utf-8").splitlines()[2:]
        return [len(line.split("\t")[3]) for line in lines]

    decode(untrained_exp, [tone_corpus["dev"]], mode=mode, beam=2)
    assert min(lengths()) > 3 and "max_length" not in (out / f"cer-tones_dev-{mode}.md").read_text(encoding="utf-8")
    decode(untrained_exp, [tone_corpus["dev"]], mode=mode, beam=2, max_length=3)
    assert lengths() == [3] * 8
    assert ", max_length=3," in (out / f"cer-tones_dev-{mode}.md").read_text(encoding="utf-8")


def test_attention_modes_need_a_decoder(tone_corpus, tmp_path):
    exp = tmp_path / "ctc"
    train(load_config(None, tiny_train_overrides(tone_corpus) + ["train.max_steps=2", "model.decoder.num_layers=0",
                                                                  "model.ctc_weight=1.0"]), exp)
    with pytest.raises(ValueError, match="needs an attention decoder"):
        decode(exp, [tone_corpus["dev"]], mode="joint_beam")


def test_transcribe_any_rate_and_channels(tiny_exp, tmp_path):
    t = np.arange(int(0.75 * 44100)) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 200 * t)] * 2, axis=1).astype(np.float32)
    sf.write(tmp_path / "x.wav", stereo, 44100)
    sf.write(tmp_path / "silence.wav", np.zeros(800, dtype=np.float32), 8000)
    texts = transcribe(tiny_exp, [tmp_path / "x.wav", tmp_path / "silence.wav"], mode="joint_beam", beam=3)
    assert len(texts) == 2 and all(set(t) <= set(TONE_CHARS) for t in texts)
    with pytest.raises(ValueError, match="cannot read audio"):
        (tmp_path / "bad.wav").write_bytes(b"nope")
        transcribe(tiny_exp, [tmp_path / "bad.wav"])


@pytest.mark.parametrize("mode", ["ctc_prefix_beam", "attention_rescoring", "joint_beam"])
def test_lm_decode_writes_its_own_reports_naming_the_lm(tiny_exp, tone_corpus, tmp_path, mode):
    from speechalign.decode.lm import LMOptions
    from tests.decode.test_ctc_beam_lm import write_arpa

    arpa = write_arpa(tmp_path / "bi.arpa")
    decode(tiny_exp, [tone_corpus["dev"]], mode=mode, beam=4, lm=LMOptions(arpa, 0.3, 0.5))
    md = (tiny_exp / "decode" / "latest" / f"cer-tones_dev-{mode}+lm.md").read_text(encoding="utf-8")
    assert "LM bi.arpa (weight 0.3, word score 0.5)" in md
    if mode != "joint_beam":
        assert "search=cpu" in md
    with pytest.raises(ValueError, match="cannot use an LM"):
        decode(tiny_exp, [tone_corpus["dev"]], mode="ctc_greedy", lm=LMOptions(arpa))


def test_ctc_weight_defaults_per_mode_and_is_recorded(tiny_exp, tone_corpus):
    out = tiny_exp / "decode" / "latest"
    decode(tiny_exp, [tone_corpus["dev"]], mode="joint_beam", beam=2)
    decode(tiny_exp, [tone_corpus["dev"]], mode="attention_rescoring", beam=2)
    assert "ctc_weight=0.7," in (out / "cer-tones_dev-joint_beam.md").read_text(encoding="utf-8")
    assert "ctc_weight=0.5," in (out / "cer-tones_dev-attention_rescoring.md").read_text(encoding="utf-8")
    decode(tiny_exp, [tone_corpus["dev"]], mode="joint_beam", beam=2, ctc_weight=0.3)
    assert "ctc_weight=0.3," in (out / "cer-tones_dev-joint_beam.md").read_text(encoding="utf-8")
