#!/usr/bin/env bash
# MDCC (Hong Kong Cantonese): Whisper-small, hybrid CTC/attention, CER.
# Usage (from the repository root): egs/mdcc/run.sh --corpus-dir /data/mdcc [--ngpu 4]
#        [--stage N] [--stop-stage N] [--out DIR] [--dry-run]      (stages: see egs/asr.sh)
name=mdcc
prepare_args=(mdcc --parts all)
config=recipes/multidialect_whisper_small.yaml
train_cuts=(mdcc_cuts_train.jsonl.gz)
dev_cuts=(mdcc_cuts_valid.jsonl.gz)
test_cuts=(mdcc_cuts_test.jsonl.gz)
source "$(dirname "$0")/../asr.sh"
