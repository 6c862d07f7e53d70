#!/usr/bin/env bash
# The default demo, offline on CPU: synthetic parallel corpus -> stats -> train -> average -> decode, with
# and without a character LM -> embed every layer -> retrieval (pooled, SeqSim, rerank; +/- centering) ->
# layer sweep -> REPORT.md and retrieval.html (each query's top 5 with audio players).
# Usage: egs/synth/run.sh [--stage N] [--stop-stage N] [--quick] [--out DIR] [--num-sentences N]
#                         [--held-out-fraction F]   (dev and test each get this fraction of the sentences)
#                         [--max-minutes M]   (an optional training time cap for people in a hurry; the report
#                                         then says the cap stopped it. Default: all 1,500 steps)
#                         [--native-arithmetic]   (this machine's fastest kernels and all its cores; by default
#                                         every x86 machine runs AVX2 kernels on 2 threads, so it prints the
#                                         README's numbers; the report names the arithmetic either way)
set -euo pipefail
source "$(dirname "$0")/../path.sh"

stage=0
stop_stage=100
quick=false
out=exp/synth
num_sentences=3100
vocabulary=800
held_out=0.035
train_sets=()
native=false
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --quick) quick=true; shift ;;
    --out) out=$2; shift 2 ;;
    --num-sentences) num_sentences=$2; shift 2 ;;
    --held-out-fraction) held_out=$2; shift 2 ;;
    --max-minutes) train_sets+=(--set "train.max_minutes=$2"); shift 2 ;;
    --native-arithmetic) native=true; shift ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done

if $quick; then
  num_sentences=40
  held_out=0.1
  train_sets+=(--set train.max_steps=30 --set train.valid_every=15 --set train.save_every=15
    --set model.conformer.d_model=64 --set model.conformer.num_layers=2 --set model.conformer.ffn_dim=128
    --set model.decoder.ffn_dim=128 --set data.max_duration=20 --set optim.warmup_steps=5)
fi
if ! $native; then
  # Read when torch starts, so set here: the kernels of speechalign/train/arithmetic.py's PORTABLE, 2 threads.
  pins=$(python -m speechalign.train.arithmetic)   # an assignment, so that set -e stops on a failure
  eval "$pins"
  export OMP_NUM_THREADS=2
fi
data=$out/data
exp=$out/conformer_ctc
emb=$out/emb
ret=$out/retrieval
mkdir -p "$out"
exec > >(tee -a "$out/run.log") 2>&1
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
done_marker() { [ -f "$out/.done.$1" ]; }
mark_done() { touch "$out/.done.$1"; }

if run_stage 0 && ! done_marker prepare; then
  log "stage 0: synthesizing $num_sentences sentences of HKCanCor's $vocabulary most frequent characters with espeak-ng (4 renderings; 1 per variety in training)"
  speechalign prepare synth --output-dir "$data" --num-sentences "$num_sentences" --vocabulary-size "$vocabulary" \
    --dev-fraction "$held_out" --test-fraction "$held_out" --train-renderings per-variety
  mark_done prepare
fi

if run_stage 1; then
  log "stage 1: statistics"
  speechalign stats "$data"/synth_cuts_{train,dev,test}.jsonl.gz | tee "$out/stats.txt"
fi

if run_stage 2 && ! done_marker train; then
  log "stage 2: training (recipes/synth_conformer_ctc.yaml)"
  speechalign train --config recipes/synth_conformer_ctc.yaml --exp-dir "$exp" --resume \
    --set "data.train=[{cuts: [$data/synth_cuts_train.jsonl.gz]}]" --set "data.dev=[$data/synth_cuts_dev.jsonl.gz]" \
    "${train_sets[@]}"
  mark_done train
fi

if run_stage 3; then
  log "stage 3: averaging the last 3 checkpoints"
  speechalign average --exp-dir "$exp" --last 3
fi

if run_stage 4 && ! done_marker decode; then
  log "stage 4: decoding the test split (per-dialect CER; joint_beam, the best here but 7x slower, is left to the user)"
  speechalign decode --exp-dir "$exp" --checkpoint avg-last3 --cuts "$data/synth_cuts_test.jsonl.gz" \
    --mode ctc_greedy ctc_prefix_beam attention_rescoring --beam 5
  mark_done decode
fi

# The LM sees training transcripts only (train-lm drops any dev/test text); its weight and word score are
# the best point of a dev sweep, then used on test.
if run_stage 4 && ! done_marker lm; then
  log "stage 4: character 4-gram LM (KenLM) on training transcripts; weights from a dev sweep; test with the LM"
  speechalign train-lm --cuts "$data/synth_cuts_train.jsonl.gz" --out "$out/lm/char4.arpa" --tokens "$exp/tokens.txt" \
    --exclude-texts-from "$data/synth_cuts_dev.jsonl.gz" "$data/synth_cuts_test.jsonl.gz"
  speechalign decode-sweep --exp-dir "$exp" --checkpoint avg-last3 --cuts "$data/synth_cuts_dev.jsonl.gz" \
    --lm "$out/lm/char4.arpa" --lm-weights 0.2 0.3 0.5 0.8 --word-scores 0 1 2 --beam 5
  read -r lm_weight word_score < <(best_lm_point "$exp/decode/avg-last3/sweep-synth_dev-ctc_prefix_beam.tsv")
  speechalign decode --exp-dir "$exp" --checkpoint avg-last3 --cuts "$data/synth_cuts_test.jsonl.gz" \
    --mode ctc_prefix_beam attention_rescoring --beam 5 --lm "$out/lm/char4.arpa" --lm-weight "$lm_weight" \
    --word-score "$word_score"
  mark_done lm
fi

if run_stage 5 && ! done_marker embed; then
  log "stage 5: embedding every layer (trained, random-init, fbank)"
  speechalign embed --exp-dir "$exp" --checkpoint avg-last3 --cuts "$data/synth_cuts_test.jsonl.gz" \
    --out "$emb/trained" --frames
  speechalign embed --exp-dir "$exp" --random-init --cuts "$data/synth_cuts_test.jsonl.gz" --out "$emb/random" --frames
  speechalign embed --features fbank --cuts "$data/synth_cuts_test.jsonl.gz" --out "$emb/fbank" --frames
  speechalign embed --exp-dir "$exp" --checkpoint avg-last3 --cuts "$data/synth_cuts_dev.jsonl.gz" \
    --out "$emb/trained-dev"
  mark_done embed
fi

# SeqSim on 100-fps fbank frames costs 16x the encoder's 25 fps, so the fbank baseline is scored by
# mean pooling here; `speechalign retrieve --emb-dir $emb/fbank --protocol seqsim` gives its SeqSim.
if run_stage 6; then
  log "stage 6: retrieval and YuBao-style matrices (varieties as subgroups, renderings as sites)"
  centers=(--center none dialect)
  speechalign retrieve --emb-dir "$emb/fbank" --out "$ret/fbank" --protocol pooled yubao --yubao-mode pooled "${centers[@]}"
  speechalign retrieve --emb-dir "$emb/random" --out "$ret/random" --protocol pooled seqsim yubao "${centers[@]}"
  speechalign retrieve --emb-dir "$emb/trained" --out "$ret/trained" --protocol pooled seqsim rerank yubao "${centers[@]}"
  speechalign retrieve --emb-dir "$emb/trained" --out "$ret/trained" --protocol pooled --center dialect \
    --map procrustes --map-train "$emb/trained-dev"
fi

if run_stage 7; then
  log "stage 7: layer sweeps (pooled and SeqSim; centered)"
  for source in random trained; do
    speechalign sweep --emb-dir "$emb/$source" --out "$ret/$source" --center dialect
  done
fi

if run_stage 8; then
  log "stage 8: report"
  speechalign report --out-dir "$out" --exp-dir "$exp" --retrieval-dir "$ret" --checkpoint avg-last3 --html
  log "report written to $out/REPORT.md and $out/retrieval.html"
fi
