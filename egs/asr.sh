#!/usr/bin/env bash
# The one staged ASR recipe template (ESPnet-style). An egs/<corpus>/run.sh sets the variables below
# and sources this file; it never copies Python. Stages are idempotent (done markers) and logged with
# timestamps to <out>/run.log.
#
#   name            recipe name; outputs go to exp/<name> unless --out is given
#   prepare_args    array: `speechalign prepare` arguments after the corpus name, e.g. (kespeech --parts all)
#   config          recipes/<...>.yaml (model, optimizer, schedule); data paths come from here
#   train_cuts      array: manifest file names (in <out>/data) mixed with equal weight, or set
#   train_data      a YAML list for data.train (weighted mixtures; $D stands for <out>/data); wins over train_cuts
#   dev_cuts        array: validation manifests
#   test_cuts       array: manifests decoded with every mode in decode_modes
#   retrieval_cuts  array (optional): manifests embedded for cross-dialect retrieval
#   retrieval_protocols  array (optional): e.g. (pooled seqsim) or (fleurs)
#   decode_modes    array (optional; default: all four modes)
#   prepare_stage   function (optional): the default runs `speechalign prepare "${prepare_args[@]}"`
#                   on the first --corpus-dir; recipes that merge several corpora define their own
#
# Options: --corpus-dir DIR (repeatable where a recipe needs several) --out DIR --stage N --stop-stage N
#          --ngpu N (torchrun processes) --dry-run (miniature model, one training step, small beams)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/path.sh"

stage=${stage:-0}
stop_stage=${stop_stage:-100}
ngpu=${ngpu:-0}
dry_run=false
out=""
corpus_dirs=()
[ -v decode_modes ] || decode_modes=(ctc_greedy ctc_prefix_beam attention_rescoring joint_beam)
[ -v retrieval_cuts ] || retrieval_cuts=()
[ -v retrieval_protocols ] || retrieval_protocols=(pooled seqsim)
[ -v train_data ] || train_data=""
declare -F prepare_stage > /dev/null || prepare_stage() {
  speechalign prepare "${prepare_args[@]}" --corpus-dir "${corpus_dirs[0]}" --output-dir "$data"
}
beam=10
avg=5
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus-dir) corpus_dirs+=("$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --ngpu) ngpu=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 1 ;;
  esac
done
[ ${#corpus_dirs[@]} -gt 0 ] || { echo "$0: --corpus-dir is required" >&2; exit 1; }
out=${out:-exp/$name}
[ -f "$config" ] || config=$repo_root/$config
cap=()
if $dry_run; then
  out=$out/dry-run
  beam=2
  avg=1
  cap=(--max-length 8)   # the miniature's decoder never ends a hypothesis: stop at 8 tokens
fi
data=$out/data
exp=$out/asr
mkdir -p "$out"
exec > >(tee -a "$out/run.log") 2>&1
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
done_marker() { [ -f "$out/.done.$1" ]; }
mark_done() { touch "$out/.done.$1"; }
in_data() { local f; for f in "$@"; do echo "$data/$f"; done; }
yaml_list() { local IFS=,; echo "[$*]"; }

if run_stage 0 && ! done_marker prepare; then
  log "stage 0: $name manifests from ${corpus_dirs[*]}"
  prepare_stage
  mark_done prepare
fi

if run_stage 1; then
  log "stage 1: statistics"
  speechalign stats $(in_data "${train_cuts[@]}" "${dev_cuts[@]}" "${test_cuts[@]}") | tee "$out/stats.txt"
fi

if run_stage 2 && ! done_marker train; then
  train_data=${train_data:-"[{cuts: $(yaml_list $(in_data "${train_cuts[@]}"))}]"}
  train_data=${train_data//\$D/$data}
  sets=(--set "data.train=$train_data" --set "data.dev=$(yaml_list $(in_data "${dev_cuts[@]}"))")
  if $dry_run; then
    log "stage 2: dry run of $config (random-init miniature, one step)"
    rm -rf "$exp"   # a pipeline check starts afresh each time (train refuses to mix two runs in a dir)
    speechalign train --config "$config" --exp-dir "$exp" --dry-run "${sets[@]}"
  elif [ "$ngpu" -gt 1 ]; then
    log "stage 2: training $config on $ngpu processes"
    torchrun --nproc_per_node "$ngpu" -m speechalign.cli train --config "$config" --exp-dir "$exp" --resume "${sets[@]}"
  else
    log "stage 2: training $config"
    speechalign train --config "$config" --exp-dir "$exp" --resume "${sets[@]}"
  fi
  mark_done train
fi

if run_stage 3; then
  log "stage 3: averaging the last $avg checkpoints"
  speechalign average --exp-dir "$exp" --last "$avg"
fi

if run_stage 4 && ! done_marker decode; then
  log "stage 4: decoding ${test_cuts[*]} (${decode_modes[*]})"
  speechalign decode --exp-dir "$exp" --checkpoint "avg-last$avg" --cuts $(in_data "${test_cuts[@]}") \
    --mode "${decode_modes[@]}" --beam "$beam" "${cap[@]}"
  mark_done decode
fi

if run_stage 5 && [ ${#retrieval_cuts[@]} -gt 0 ] && ! done_marker embed; then
  log "stage 5: embedding every layer of ${retrieval_cuts[*]}"
  speechalign embed --exp-dir "$exp" --checkpoint "avg-last$avg" --cuts $(in_data "${retrieval_cuts[@]}") \
    --out "$out/emb" --frames
  mark_done embed
fi

if run_stage 6 && [ ${#retrieval_cuts[@]} -gt 0 ]; then
  log "stage 6: retrieval (${retrieval_protocols[*]}) and layer sweep"
  for protocol in "${retrieval_protocols[@]}"; do
    for center in none dialect; do
      speechalign retrieve --emb-dir "$out/emb" --out "$out/retrieval" --protocol "$protocol" --center "$center"
    done
  done
  speechalign sweep --emb-dir "$out/emb" --out "$out/retrieval" --center dialect
fi
log "done: CER tables in $exp/decode/, retrieval tables in $out/retrieval/"
