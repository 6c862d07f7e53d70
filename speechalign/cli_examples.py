"""One example per command, shown at the end of ``speechalign <command> --help``.

Kept apart from the parser definitions so speechalign/cli/*.py and data_prep/*.py stay about options only."""

from __future__ import annotations

import argparse

EXAMPLES: dict[str, str] = {
    "prepare kespeech": "speechalign prepare kespeech --corpus-dir /data/KeSpeech --output-dir data/manifests",
    "prepare mdcc": "speechalign prepare mdcc --corpus-dir /data/mdcc --output-dir data/manifests",
    "prepare commonvoice": "speechalign prepare commonvoice --corpus-dir /data/cv-corpus --output-dir data/manifests "
                           "--languages zh-HK",
    "prepare aishell": "speechalign prepare aishell --corpus-dir /data/aishell --output-dir data/manifests",
    "prepare fleurs": "speechalign prepare fleurs --corpus-dir /data/fleurs --output-dir data/manifests",
    "prepare yubao": "speechalign prepare yubao --corpus-dir /data/yubao/scraped --output-dir data/manifests",
    "prepare tw-hokkien": "speechalign prepare tw-hokkien --corpus-dir ../shared/data/tw-hokkien "
                          "--output-dir data/manifests",
    "prepare goo-gi": "speechalign prepare goo-gi --corpus-dir ../shared/data/goo-gi --output-dir data/manifests \\\n"
                      "    --train-ids 001-120 --dev-ids 121-140 --test-ids 141-170",
    "prepare lan-lai": "speechalign prepare lan-lai --corpus-dir ../shared/data/lan-lai --output-dir data/manifests \\\n"
                       "    --exclude-texts-from data/manifests/goo-gi_cuts_test.jsonl.gz",
    "prepare foochow-idioms": "speechalign prepare foochow-idioms --corpus-dir ../shared/data/foochow-idioms "
                              "--output-dir data/manifests \\\n    --exclude-texts-from data/manifests/goo-gi_cuts_test.jsonl.gz",
    "prepare kasu100": "speechalign prepare kasu100 --corpus-dir ../shared/data/kasu100 --output-dir data/manifests \\\n"
                       "    --exclude-texts-from data/manifests/goo-gi_cuts_test.jsonl.gz",
    "prepare synth": "speechalign prepare synth --output-dir data/synth --num-sentences 300",
    "prepare custom": "speechalign prepare custom --corpus-dir my_corpus/ --output-dir data/manifests",
    "prepare filter": "speechalign prepare filter --cuts train.jsonl.gz --exclude-texts-from test.jsonl.gz "
                      "--out train.clean.jsonl.gz",
    "stats": "speechalign stats data/manifests/*_cuts_*.jsonl.gz",
    "train": "speechalign train --config recipes/synth_conformer_ctc.yaml --exp-dir exp/demo --set optim.lr=1e-3",
    "average": "speechalign average --exp-dir exp/demo --last 3",
    "interpolate": "speechalign interpolate --exp-dir exp/goo-gi/whisper_base_hybrid_packed_enc --alpha 0.7"
                   "   # -> wise-decoder-0.7",
    "import-whisper": "speechalign import-whisper --ct2-dir faster-whisper-base/ --out exp/whisper-base",
    "fetch-pretrained": "speechalign fetch-pretrained whisper-base",
    "decode": "speechalign decode --exp-dir exp/demo --checkpoint avg-last3 --cuts data/synth/synth_cuts_test.jsonl.gz \\\n"
              "    --mode ctc_greedy attention_rescoring --beam 10",
    "train-lm": "speechalign train-lm --cuts data/synth/synth_cuts_train.jsonl.gz --tokens exp/demo/tokens.txt \\\n"
                "    --order 4 --out exp/demo/lm/char4.arpa --exclude-texts-from data/synth/synth_cuts_{dev,test}.jsonl.gz",
    "decode-sweep": "speechalign decode-sweep --exp-dir exp/demo --checkpoint avg-last3 --cuts data/synth/synth_cuts_dev.jsonl.gz \\\n"
                    "    --lm exp/demo/lm/char4.arpa --lm-weights 0.2 0.4 0.6 --word-scores 0 1 2",
    "transcribe": "speechalign transcribe recording.wav --exp-dir exp/demo",
    "score": "speechalign score --ref ref.txt --hyp hyp.txt --groups utt2dialect.tsv",
    "score-translation": "speechalign score-translation --recogs exp/st/decode/latest/recogs-goo-gi_test-attention_beam.txt "
                         "\\\n    --cuts data/manifests/goo-gi_cuts_test.jsonl.gz",
    "embed": "speechalign embed --exp-dir exp/demo --checkpoint avg-last3 --cuts data/synth/synth_cuts_test.jsonl.gz \\\n"
             "    --out exp/demo/emb --frames",
    "retrieve": "speechalign retrieve --emb-dir exp/demo/emb --protocol pooled seqsim yubao --layer all",
    "sweep": "speechalign sweep --emb-dir exp/demo/emb --center dialect",
    "compare systems": "speechalign compare systems \\\n"
                       "    'zero-shot:cer=exp/real/zero-shot/cer-goo-gi_test-faster_whisper_beam5.tsv,"
                       "cascade=exp/real/retrieval/goo-gi-text/text-zero-shot-faster_whisper_beam5' \\\n"
                       "    'recipe:cer=exp/real/whisper_base_hybrid/decode/avg-last3/cer-goo-gi_test-attention_beam.tsv,"
                       "yubao=exp/real/retrieval/goo-gi/whisper_base_hybrid,training=exp/real/whisper_base_hybrid' \\\n"
                       "    --out exp/real/alternatives",
    "compare pairs": "speechalign compare pairs exp/r/*/pooled-L6-mean.tsv --query Cantonese --gallery Mandarin --out exp/r/compare",
    "compare yubao": "speechalign compare yubao fbank=exp/r/fbank whisper=exp/r/whisper-base --out exp/r/yubao-compare",
    "compare cer": "speechalign compare cer zero-shot=exp/zs/cer-goo-gi_test-whisper_greedy.tsv fbank= "
                   "--out exp/cer-compare",
    "compare ablation": "speechalign compare ablation exp/real/full exp/real/lora "
                        "--cer avg-last3/cer-goo-gi_dev-attention_beam.tsv --out exp/real/ablation",
    "report": "speechalign report --out-dir exp/synth --exp-dir exp/synth/conformer_ctc "
              "--retrieval-dir exp/synth/retrieval --html",
}


def add_examples(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Append ``example:`` to the help of every (sub)command that has one here and none yet."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                add_examples(sub, f"{path} {name}".strip())
    if path in EXAMPLES and "example" not in f"{parser.description or ''}{parser.epilog or ''}":
        parser.epilog = f"example:\n  {EXAMPLES[path]}"
        # Keeps the example's line breaks; option help is still wrapped as usual.
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
