#!/usr/bin/env bash
# YuBao cross-dialect retrieval benchmark (evaluation only): 8x8 subgroup R@1 matrices (SeqSim, rerank,
# mean-pooled; with and without dialect centering) for any encoder. See egs/yubao/README.md for the data.
# Usage (from the repository root):
#   egs/yubao/run.sh --corpus-dir /data/yubao/scraped (--exp-dir EXP [--checkpoint avg-last5] |
#     --encoder-dir DIR | --pretrained whisper-base | --features fbank) [--layers all] [--out DIR]
#     [--stage N] [--stop-stage N] [--dry-run]
#   egs/yubao/run.sh --corpus-dir /data/yubao/scraped --encoders [LABEL=]ENCODER ... [--out DIR]
#     the encoder table: every ENCODER (a transformers hub id or directory of any supported family, e.g.
#     TencentGameMate/chinese-hubert-base, microsoft/wavlm-large, facebook/w2v-bert-2.0, openai/whisper-small;
#     LABEL defaults to its last path part) embedded at every layer, its YuBao matrices (SeqSim and mean-pooled,
#     with and without centering) at every layer, then one table and one layer plot of them all
#     (OUT/encoders.md, .png): each encoder's best layer and R@1 per protocol and centering.
# Stages: 0 manifests, 1 embeddings (all layers, frames), 2 YuBao matrices, 3 layer sweep of the matrices
#         (--encoders: 2 the matrices of every layer, 3 the encoder table).
set -euo pipefail
source "$(dirname "$0")/../path.sh"

stage=0
stop_stage=100
out=exp/yubao
corpus_dir=""
source_args=()
checkpoint=latest
layers=all
dry_run=false
encoders=()
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus-dir) corpus_dir=$2; shift 2 ;;
    --exp-dir) source_args=(--exp-dir "$2"); shift 2 ;;
    --encoder-dir) source_args=(--encoder-dir "$2"); shift 2 ;;
    --pretrained) source_args=(--encoder-dir "$(speechalign fetch-pretrained "$2")"); shift 2 ;;
    --features) source_args=(--features "$2"); shift 2 ;;
    --encoders) shift; while [ $# -gt 0 ] && [[ $1 != --* ]]; do encoders+=("$1"); shift; done ;;
    --checkpoint) checkpoint=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 1 ;;
  esac
done
[ -n "$corpus_dir" ] || { echo "$0: --corpus-dir is required" >&2; exit 1; }
[ $(( ${#source_args[@]} > 0 )) -ne $(( ${#encoders[@]} > 0 )) ] ||
  { echo "$0: give one of --exp-dir, --encoder-dir, --pretrained, --features or --encoders A B ..." >&2; exit 1; }
$dry_run && out=$out/dry-run
[ "${source_args[0]:-}" = --exp-dir ] && source_args+=(--checkpoint "$checkpoint")
mkdir -p "$out"
exec > >(tee -a "$out/run.log") 2>&1
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
cuts=$out/data/yubao_cuts_test.jsonl.gz

if run_stage 0 && [ ! -f "$cuts" ]; then
  log "stage 0: YuBao manifests from $corpus_dir"
  speechalign prepare yubao --corpus-dir "$corpus_dir" --output-dir "$out/data"
fi

if [ ${#encoders[@]} -gt 0 ]; then
  systems=()
  for spec in "${encoders[@]}"; do
    label=${spec%%=*}; encoder=${spec#*=}
    [ "$label" = "$spec" ] && label=$(basename "$encoder")
    dir=$out/encoders/$label
    if run_stage 1 && [ ! -f "$dir/emb/info.yaml" ]; then
      log "stage 1: embeddings of $label ($encoder; every layer, frames)"
      speechalign embed --encoder "$encoder" --cuts "$cuts" --out "$dir/emb" --layers "$layers" --frames
    fi
    if run_stage 2 && [ ! -f "$dir/retrieval/.done" ]; then
      log "stage 2: YuBao matrices of $label, every layer"
      speechalign retrieve --emb-dir "$dir/emb" --out "$dir/retrieval" --protocol yubao --yubao-mode seqsim pooled \
        --center none dialect --layer all
      touch "$dir/retrieval/.done"
    fi
    systems+=("$label=$dir/retrieval")
  done
  if run_stage 3; then
    log "stage 3: the encoder table"
    speechalign compare yubao "${systems[@]}" --out "$out/encoders" \
      --title "YuBao: best layer and mean off-diagonal R@1 per encoder"
  fi
  log "done: $out/encoders.md and its layer plot $out/encoders.png"
  exit 0
fi

if run_stage 1 && [ ! -f "$out/.done.embed" ]; then
  log "stage 1: embeddings (${source_args[*]}, layers $layers)"
  speechalign embed "${source_args[@]}" --cuts "$cuts" --out "$out/emb" --layers "$layers" --frames
  touch "$out/.done.embed"
fi

if run_stage 2; then
  log "stage 2: YuBao matrices (top layer)"
  speechalign retrieve --emb-dir "$out/emb" --out "$out/retrieval" --protocol yubao --yubao-mode seqsim rerank pooled \
    --center none dialect --diagonal
fi

if run_stage 3; then
  log "stage 3: mean-pooled YuBao matrix per layer"
  speechalign retrieve --emb-dir "$out/emb" --out "$out/retrieval/layers" --protocol yubao --yubao-mode pooled \
    --center dialect --layer all
fi
log "done: YuBao tables and heatmaps in $out/retrieval/"
