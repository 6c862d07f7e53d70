#!/usr/bin/env bash
# FLEURS Mandarin (cmn_hans_cn) + Cantonese (yue_hant_hk): Whisper-small, hybrid CTC/attention, CER per
# language, then cross-language retrieval of the same prompt (--protocol fleurs).
# Usage (from the repository root): egs/fleurs/run.sh --corpus-dir /data/fleurs [--ngpu 4]
#        [--stage N] [--stop-stage N] [--out DIR] [--dry-run]      (stages: see egs/asr.sh)
name=fleurs
prepare_args=(fleurs)
config=recipes/multidialect_whisper_small.yaml
train_cuts=(fleurs-cmn_hans_cn_cuts_train.jsonl.gz fleurs-yue_hant_hk_cuts_train.jsonl.gz)
dev_cuts=(fleurs-cmn_hans_cn_cuts_dev.jsonl.gz fleurs-yue_hant_hk_cuts_dev.jsonl.gz)
test_cuts=(fleurs-cmn_hans_cn_cuts_test.jsonl.gz fleurs-yue_hant_hk_cuts_test.jsonl.gz)
retrieval_cuts=("${test_cuts[@]}")
retrieval_protocols=(fleurs)
source "$(dirname "$0")/../asr.sh"
