#!/usr/bin/env bash
# AISHELL-1 (Mandarin): Whisper-small, hybrid CTC/attention, CER.
# Usage (from the repository root): egs/aishell/run.sh --corpus-dir /data/aishell [--ngpu 4]
#        [--stage N] [--stop-stage N] [--out DIR] [--dry-run]      (stages: see egs/asr.sh)
name=aishell
prepare_args=(aishell)
config=recipes/multidialect_whisper_small.yaml
train_cuts=(aishell_cuts_train.jsonl.gz)
dev_cuts=(aishell_cuts_dev.jsonl.gz)
test_cuts=(aishell_cuts_test.jsonl.gz)
source "$(dirname "$0")/../asr.sh"
