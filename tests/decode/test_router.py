import json
import shutil

import numpy as np
import pytest

from speechalign.config import load_config
from speechalign.decode.router import (MAIN, VarietyRouter, fit_linear, parse_routes, pooled_states, routed_shares,
                                       train_router)
from speechalign.models.experiment import load_experiment
from speechalign.decode.run import decode, transcribe
from speechalign.train.trainer import train
from tests.conftest import tiny_train_overrides


def _planted(n: int = 60, classes: int = 2, seed: int = 0):
    """Points around well-separated class centres in 8 dimensions, with an offset and unequal scales."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (classes, 8)) + 10
    labels = [f"c{i % classes}" for i in range(n)]
    x = np.stack([centres[int(c[1:])] for c in labels]) + rng.normal(0, 0.3, (n, 8))
    return x * np.linspace(0.1, 10, 8), labels


@pytest.mark.parametrize("classes", [2, 3])
def test_a_fitted_router_predicts_planted_classes_and_survives_its_file(classes, tmp_path):
    x, labels = _planted(classes=classes)
    names, weight, bias = fit_linear(x, labels)
    router = VarietyRouter("avg-last3", 4, "0" * 64, {"A": "c1"}, names, weight, bias, {"note": "planted"})
    assert router.predict(x) == labels
    test_x, test_labels = _planted(n=30, classes=classes, seed=0)
    assert router.predict(test_x + np.random.default_rng(1).normal(0, 0.05, test_x.shape)) == test_labels
    back = VarietyRouter.load(router.save(tmp_path / "r.safetensors"))
    assert (back.checkpoint, back.layer, back.checkpoint_sha256, back.routes, back.classes, back.fit) == \
        ("avg-last3", 4, "0" * 64, {"A": "c1"}, names, {"note": "planted"})
    assert back.predict(x) == labels


def test_router_inputs_are_checked(tmp_path):
    assert parse_routes(["Mandarin=wise-decoder+encoder-0", " B = step-8 "]) == \
        {"Mandarin": "wise-decoder+encoder-0", "B": "step-8"}
    for bad in (["Mandarin"], ["=x"], ["A=x", "A=y"], []):
        with pytest.raises(ValueError, match="--route"):
            parse_routes(bad)
    with pytest.raises(ValueError, match="one route only"):
        fit_linear(np.zeros((4, 2)), ["main"] * 4)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors"):
        VarietyRouter.load(junk)


def test_routed_shares_count_routes_per_true_variety():
    assert routed_shares(["x", MAIN, "x", MAIN], ["A", "A", "B", "B"]) == {"A": {"main": 1, "x": 1},
                                                                          "B": {"main": 1, "x": 1}}


@pytest.fixture(scope="module")
def two_checkpoints(tone_corpus, tmp_path_factory):
    exp = tmp_path_factory.mktemp("routed")
    train(load_config(None, tiny_train_overrides(tone_corpus) + ["train.max_steps=24"]), exp)
    return exp


def test_routed_decode_reads_each_utterance_with_its_checkpoint(two_checkpoints, tone_corpus):
    exp, dev = two_checkpoints, tone_corpus["dev"]
    router, path = train_router(exp, [tone_corpus["train"]], {"A": "step-4"}, checkpoint="latest", dev=[dev])
    assert set(router.fit["dev"]["tones_cuts_dev.jsonl.gz"]["routed"]) == {"A", "B"}
    # The planted varieties alternate by index, so the router's own guess is arbitrary: split the set in two.
    x, _ = pooled_states(load_experiment(exp, "latest")[2], dev, router.layer, 120.0)
    router.weight = np.zeros_like(router.weight)
    router.weight[0, 0] = 1.0
    router.bias = np.array([-np.median(x[:, 0])])
    router.save(path)
    decode(exp, [dev], mode="attention_beam", beam=3, checkpoint="latest", router=path)
    decode(exp, [dev], mode="attention_beam", beam=3, checkpoint="latest")
    decode(exp, [dev], mode="attention_beam", beam=3, checkpoint="step-4")
    out = exp / "decode"
    routes = dict(line.split("\t")[0::2] for line in
                  (out / "latest" / "routes-tones_dev-attention_beam+route.tsv").read_text().splitlines()[1:])
    assert len(routes) == 8 and set(routes.values()) == {MAIN, "step-4"}

    def hyps(checkpoint: str, label: str) -> dict[str, str]:
        lines = (out / checkpoint / f"recogs-tones_dev-{label}.txt").read_text(encoding="utf-8").splitlines()[2:]
        return {f[0]: f[3] for f in (line.split("\t") for line in lines)}

    routed, main, other = hyps("latest", "attention_beam+route"), hyps("latest", "attention_beam"), \
        hyps("step-4", "attention_beam")
    assert main != other   # otherwise the test could not tell the routes apart
    assert routed == {u: (main if r == MAIN else other)[u] for u, r in routes.items()}
    assert "routed by" in (out / "latest" / "cer-tones_dev-attention_beam+route.md").read_text(encoding="utf-8")


def test_routing_is_refused_where_it_cannot_hold(two_checkpoints, tone_corpus, tmp_path):
    exp = two_checkpoints
    with pytest.raises(ValueError, match=r"not in the training cuts.*\['A', 'B'\]"):
        train_router(exp, [tone_corpus["train"]], {"Mandarin": "step-4"})
    with pytest.raises(FileNotFoundError, match="step-999"):
        train_router(exp, [tone_corpus["train"]], {"A": "step-999"})
    _, path = train_router(exp, [tone_corpus["train"]], {"A": "step-4"}, checkpoint="step-8")
    with pytest.raises(ValueError, match="fitted on the states of checkpoint 'step-8'"):
        decode(exp, [tone_corpus["dev"]], mode="attention_beam", checkpoint="latest", router=path)
    with pytest.raises(ValueError, match="reads the CTC head"):
        decode(exp, [tone_corpus["dev"]], mode="ctc_greedy", checkpoint="step-8", router=path)
    # the checkpoint re-written after the fit (as a re-run of averaging does): refused until refitted
    stale = tmp_path / "stale"
    shutil.copytree(exp, stale)
    shutil.copy(stale / "checkpoints" / "step-12" / "model.safetensors", stale / "checkpoints" / "step-8" / "model.safetensors")
    with pytest.raises(ValueError, match="changed since the router was fitted"):
        decode(stale, [tone_corpus["dev"]], mode="attention_beam", checkpoint="step-8", router=path)


def test_transcribe_with_a_router_reads_each_file_with_its_route(two_checkpoints, tone_corpus, tmp_path):
    exp = two_checkpoints
    files = sorted(tone_corpus["dev"].parent.parent.glob("dev*.wav"))[:3]
    router, _ = train_router(exp, [tone_corpus["train"]], {"A": "step-4"}, checkpoint="latest")
    expected = {}
    for route, bias in (("step-4", 1e9), ("latest", -1e9)):   # every file one way, then the other
        router.weight, router.bias = np.zeros_like(router.weight), np.array([bias])
        path = router.save(tmp_path / f"to-{route}.safetensors")
        expected[route] = transcribe(exp, files, mode="attention_beam", beam=3, checkpoint=route)
        assert transcribe(exp, files, mode="attention_beam", beam=3, checkpoint="latest", router=path) == \
            expected[route]
    assert expected["step-4"] != expected["latest"]


def test_long_form_windows_are_routed_too(two_checkpoints, tone_corpus, tmp_path):
    """transcribe --long-form on with a router: every VAD segment is read by the checkpoint it is routed to."""
    from tests.decode.test_longform import SENTENCES, espeak, needs_espeak

    if needs_espeak.args[0]:
        pytest.skip("espeak-ng is not installed")
    exp = two_checkpoints
    gap = np.zeros(8000, np.float32)
    wav = tmp_path / "two.wav"
    import soundfile as sf

    sf.write(wav, np.concatenate([gap, espeak(SENTENCES[0]), gap, gap, espeak(SENTENCES[1]), gap]), 16000)
    router, _ = train_router(exp, [tone_corpus["train"]], {"A": "step-4"}, checkpoint="latest")
    router.weight, router.bias = np.zeros_like(router.weight), np.array([1e9])   # everything to step-4
    path = router.save(tmp_path / "to-step-4.safetensors")
    out = tmp_path / "o"
    routed = transcribe(exp, [wav], mode="attention_beam", beam=3, checkpoint="latest", router=path, long_form="on",
                        output_dir=out, formats=["json"])
    direct = transcribe(exp, [wav], mode="attention_beam", beam=3, checkpoint="step-4", long_form="on")
    plain = transcribe(exp, [wav], mode="attention_beam", beam=3, checkpoint="latest", long_form="on")
    assert routed == direct and direct != plain
    assert len(json.loads((out / "two.json").read_text(encoding="utf-8"))["segments"]) == 2
