#!/usr/bin/env bash
# This project's reconstruction of the setup of Chang et al. (2026, arXiv:2601.07274; model, corpora, mixture
# weights and schedule are this project's choices, not checked against the paper's text): Whisper-small
# fine-tuned with the hybrid CTC/attention loss on KeSpeech + MDCC + Common Voice zh-HK/zh-CN (weighted
# mixture), on GPU(s) via torchrun; CER per dialect on each test set; then, given a 4th directory, the YuBao
# cross-dialect retrieval benchmark (egs/yubao/run.sh) on the model. Two nodes, Shar, workers: docs/scaling.md.
# Usage (from the repository root; corpus directories in this order):
#   egs/multidialect/run.sh --corpus-dir /data/KeSpeech --corpus-dir /data/mdcc \
#     --corpus-dir /data/cv-corpus-17.0 [--corpus-dir /data/yubao/scraped] [--ngpu 8] [--dry-run]
#     [--parallel-cuts FILE ...]
#   --parallel-cuts adds manifests of parallel speech (one sentence_id read in several varieties: YuBao-like data
#   from `speechalign prepare custom`, FLEURS cmn_hans_cn + yue_hant_hk) to the mixture (weight 0.1) and trains
#   recipes/multidialect_whisper_small_align.yaml: the alignment term beside the ASR loss (not ASR-only).
name=multidialect
config=recipes/multidialect_whisper_small.yaml
parallel_cuts=(); rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --parallel-cuts) parallel_cuts+=("$2"); shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
set -- ${rest[@]+"${rest[@]}"}
prepare_stage() {
  [ ${#corpus_dirs[@]} -ge 3 ] || { echo "multidialect: give KeSpeech, MDCC and Common Voice dirs" >&2; exit 1; }
  speechalign prepare kespeech --parts all --corpus-dir "${corpus_dirs[0]}" --output-dir "$data"
  speechalign prepare mdcc --parts all --corpus-dir "${corpus_dirs[1]}" --output-dir "$data"
  speechalign prepare commonvoice --languages zh-HK zh-CN --corpus-dir "${corpus_dirs[2]}" --output-dir "$data"
}
train_data="[{cuts: [\$D/kespeech_cuts_train_phase1.jsonl.gz, \$D/kespeech_cuts_train_phase2.jsonl.gz], weight: 0.6},
  {cuts: [\$D/mdcc_cuts_train.jsonl.gz], weight: 0.15}, {cuts: [\$D/commonvoice-zh-HK_cuts_train.jsonl.gz], weight: 0.1},
  {cuts: [\$D/commonvoice-zh-CN_cuts_train.jsonl.gz], weight: 0.15}]"
if [ ${#parallel_cuts[@]} -gt 0 ]; then
  config=recipes/multidialect_whisper_small_align.yaml
  train_data="${train_data%]}, {cuts: [$(IFS=,; echo "${parallel_cuts[*]}")], weight: 0.1}]"
fi
train_cuts=(kespeech_cuts_train_phase1.jsonl.gz kespeech_cuts_train_phase2.jsonl.gz mdcc_cuts_train.jsonl.gz
  commonvoice-zh-HK_cuts_train.jsonl.gz commonvoice-zh-CN_cuts_train.jsonl.gz)
dev_cuts=(kespeech_cuts_dev_phase1.jsonl.gz mdcc_cuts_valid.jsonl.gz)
test_cuts=(kespeech_cuts_test.jsonl.gz mdcc_cuts_test.jsonl.gz commonvoice-zh-HK_cuts_test.jsonl.gz
  commonvoice-zh-CN_cuts_test.jsonl.gz)
source "$(dirname "$0")/../asr.sh"

if run_stage 7 && [ ${#corpus_dirs[@]} -ge 4 ]; then
  log "stage 7: YuBao cross-dialect retrieval with the trained encoder"
  yubao_opts=()
  $dry_run && yubao_opts=(--dry-run)
  "$repo_root/egs/yubao/run.sh" --corpus-dir "${corpus_dirs[3]}" --exp-dir "$exp" --checkpoint "avg-last$avg" \
    --out "$out/yubao" "${yubao_opts[@]}"
fi
