#!/usr/bin/env bash
# The default demo: a synthetic multi-variety parallel corpus, offline and on CPU.
# Usage: egs/synth/run.sh [--stage N] [--stop-stage N] [--num-sentences N] [--out DIR]
set -euo pipefail
source "$(dirname "$0")/../path.sh"

stage=0
stop_stage=100
num_sentences=300
out=exp/synth
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --num-sentences) num_sentences=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
data=$out/data
mkdir -p "$out"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if [ -f "$data/.done" ]; then
    log "stage 0: synthetic corpus already in $data"
  else
    log "stage 0: generating $num_sentences sentences with espeak-ng"
    speechalign prepare synth --output-dir "$data" --num-sentences "$num_sentences"
    touch "$data/.done"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: statistics"
  speechalign stats "$data"/synth_cuts_train.jsonl.gz "$data"/synth_cuts_dev.jsonl.gz "$data"/synth_cuts_test.jsonl.gz
fi
