#!/usr/bin/env bash
# Common Voice zh-CN (Mandarin) + zh-HK (Cantonese): Whisper-small, hybrid CTC/attention, CER per language.
# Usage (from the repository root): egs/commonvoice/run.sh --corpus-dir /data/cv-corpus-17.0-2024-03-15
#        [--ngpu 4] [--stage N] [--stop-stage N] [--out DIR] [--dry-run]      (stages: see egs/asr.sh)
name=commonvoice
prepare_args=(commonvoice --languages zh-CN zh-HK)
config=recipes/multidialect_whisper_small.yaml
train_cuts=(commonvoice-zh-CN_cuts_train.jsonl.gz commonvoice-zh-HK_cuts_train.jsonl.gz)
dev_cuts=(commonvoice-zh-CN_cuts_dev.jsonl.gz commonvoice-zh-HK_cuts_dev.jsonl.gz)
test_cuts=(commonvoice-zh-CN_cuts_test.jsonl.gz commonvoice-zh-HK_cuts_test.jsonl.gz)
source "$(dirname "$0")/../asr.sh"
