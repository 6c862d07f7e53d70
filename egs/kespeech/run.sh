#!/usr/bin/env bash
# KeSpeech (Mandarin + 8 subdialects): Whisper-small, hybrid CTC/attention, CER per subdialect.
# Usage (from the repository root): egs/kespeech/run.sh --corpus-dir /data/KeSpeech [--ngpu 4]
#        [--stage N] [--stop-stage N] [--out DIR] [--dry-run]      (stages: see egs/asr.sh)
name=kespeech
prepare_args=(kespeech --parts all)
config=recipes/multidialect_whisper_small.yaml
train_cuts=(kespeech_cuts_train_phase1.jsonl.gz kespeech_cuts_train_phase2.jsonl.gz)
dev_cuts=(kespeech_cuts_dev_phase1.jsonl.gz kespeech_cuts_dev_phase2.jsonl.gz)
test_cuts=(kespeech_cuts_test.jsonl.gz)
source "$(dirname "$0")/../asr.sh"
