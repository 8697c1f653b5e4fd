#!/usr/bin/env bash
# Training recipes for a recurrence held on the arrays (README, "The recurrence on the
# crossbar"; issue 17 item 3). Every row trains (or fine-tunes) a digits model and deploys it
# with `--mode=deploy` (the step-mode chip: the state goes through the converters every step)
# on PCM-like and RRAM-like (rram_taox) chips, $SEEDS chips each.
#
#   bash bench/recurrence_recipes.sh OUT              # every row, in order
#   bash bench/recurrence_recipes.sh OUT ROW [ROW..]  # some rows (their bases run first)
#   .venv/bin/python bench/recurrence_table.py OUT     # the README table
#
# A row whose results exist is skipped, so an interrupted run resumes. Environment:
# PYTHON (default .venv/bin/python), SEEDS (chips per device, default 5), NICE (the
# launches' niceness, default 10).
set -euo pipefail
OUT=${1:?usage: bash bench/recurrence_recipes.sh OUT [ROW ...]}
shift
PY=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-5}
LAUNCH=(nice -n "${NICE:-10}" "$PY" launch.py)
DEFAULT=(--config=configs/default.py)
FINETUNE=(--config.num_epochs=10 "--config.init_checkpoint=$OUT/float")
mkdir -p "$OUT"

# train DIR --config=FILE ARGS...: trains into OUT/DIR unless it holds results.json.
train() {
  local dir=$1
  shift
  [[ -f $OUT/$dir/results.json ]] && return
  "${LAUNCH[@]}" "$@" --workdir="$OUT/$dir" --mode=train --config.progress_bar=False \
    > "$OUT/$dir.train.log" 2>&1
}

# deploy DIR FOLDER --config=FILE ARGS...: deploys OUT/DIR's best checkpoint into OUT/DIR/FOLDER.
deploy() {
  local dir=$1 folder=$2
  shift 2
  [[ -f $OUT/$dir/$folder/results.json ]] && return
  "${LAUNCH[@]}" "$@" --workdir="$OUT/$dir" --mode=deploy --config.progress_bar=False \
    "--config.deploy.seeds=$SEEDS" "--config.deploy.folder=$folder" > "$OUT/$dir.$folder.log" 2>&1
}

RES=(--config.hardware.recurrence=residual)
DIR=(--config.hardware.recurrence=direct)
TRIM=(--config.deploy.recurrence_gain=decay)
G50=(--config.hardware.g_max_fraction=0.5)
# Low-bit a_bar alone (our scheme): every other group float.
QAT_ABAR=(--config.quant.enabled=True --config.quant.weight_bits=16 --config.quant.act_bits=16)
QS4D=(--config.quant.scheme=qs4d --config.quant.a_bar_bits=4)
# Fewer and slower modes: N = 8 (4 complex modes), steps initialised in [1e-3, 1e-2].
SMALL=(--config.model.d_state=8 --config.model.step_max=0.01)

row() {
  case $1 in
    # (a) The float default model.
    float_digital) train float "${DEFAULT[@]}"; deploy float deploy_digital "${DEFAULT[@]}" ;;
    float_residual) train float "${DEFAULT[@]}"; deploy float deploy_residual "${DEFAULT[@]}" "${RES[@]}" ;;
    float_direct) train float "${DEFAULT[@]}"; deploy float deploy_direct "${DEFAULT[@]}" "${DIR[@]}" ;;
    # (e) The same chips with the per-mode gain trim (exact measurement; then 16 reads).
    float_residual_trim)
      train float "${DEFAULT[@]}"
      deploy float deploy_residual_trim "${DEFAULT[@]}" "${RES[@]}" "${TRIM[@]}" ;;
    float_direct_trim)
      train float "${DEFAULT[@]}"
      deploy float deploy_direct_trim "${DEFAULT[@]}" "${DIR[@]}" "${TRIM[@]}" ;;
    float_residual_trim16)
      train float "${DEFAULT[@]}"
      deploy float deploy_residual_trim16 "${DEFAULT[@]}" "${RES[@]}" "${TRIM[@]}" \
        --config.deploy.gain_reads=16 ;;
    # The best recipe on 20 chips per device (the row of CLAIMS.md's claim 5).
    float_residual_trim_x20)
      train float "${DEFAULT[@]}"
      SEEDS=20 deploy float deploy_residual_trim_x20 "${DEFAULT[@]}" "${RES[@]}" "${TRIM[@]}" ;;
    # (f) A margin below g_max: each column's largest weight mapped at 0.8 or 0.5 g_max.
    float_residual_g50)
      train float "${DEFAULT[@]}"
      deploy float deploy_residual_g50 "${DEFAULT[@]}" "${RES[@]}" "${G50[@]}" ;;
    float_residual_trim_g80)
      train float "${DEFAULT[@]}"
      deploy float deploy_residual_trim_g80 "${DEFAULT[@]}" "${RES[@]}" "${TRIM[@]}" \
        --config.hardware.g_max_fraction=0.8 ;;
    float_residual_trim_g50)
      train float "${DEFAULT[@]}"
      deploy float deploy_residual_trim_g50 "${DEFAULT[@]}" "${RES[@]}" "${TRIM[@]}" "${G50[@]}" ;;
    # (b) QAT of a_bar alone at 4 bits (our scheme), fine-tuned from the float model.
    qat_abar4)
      train float "${DEFAULT[@]}"
      train qat_abar4 "${DEFAULT[@]}" "${FINETUNE[@]}" "${QAT_ABAR[@]}" --config.quant.a_bar_bits=4
      deploy qat_abar4 deploy_residual "${DEFAULT[@]}" "${QAT_ABAR[@]}" \
        --config.quant.a_bar_bits=4 "${RES[@]}" ;;
    # (b) The QS4D authors' scheme: the continuous-time A at 4 bits (per tensor), the rest
    # float (a qs4d export with float activations runs on the step-mode chip).
    qs4d_a4)
      train float "${DEFAULT[@]}"
      train qs4d_a4 "${DEFAULT[@]}" "${FINETUNE[@]}" "${QAT_ABAR[@]}" "${QS4D[@]}"
      deploy qs4d_a4 deploy_residual "${DEFAULT[@]}" "${QAT_ABAR[@]}" "${QS4D[@]}" "${RES[@]}" ;;
    # (d) Fewer, slower modes, trained from scratch.
    small_slow)
      train small_slow "${DEFAULT[@]}" "${SMALL[@]}"
      deploy small_slow deploy_residual "${DEFAULT[@]}" "${SMALL[@]}" "${RES[@]}" ;;
    small_slow_trim)
      train small_slow "${DEFAULT[@]}" "${SMALL[@]}"
      deploy small_slow deploy_residual_trim "${DEFAULT[@]}" "${SMALL[@]}" "${RES[@]}" "${TRIM[@]}" ;;
    # (d) Fewer modes alone (N = 8), and S4D-Lin at pi/4 n (slower rotation: the real part
    # of a_bar - 1 is a 4x larger share of each mode's column), trained from scratch.
    small8)
      train small8 "${DEFAULT[@]}" --config.model.d_state=8
      deploy small8 deploy_residual "${DEFAULT[@]}" --config.model.d_state=8 "${RES[@]}" ;;
    small8_trim)
      train small8 "${DEFAULT[@]}" --config.model.d_state=8
      deploy small8 deploy_residual_trim "${DEFAULT[@]}" --config.model.d_state=8 "${RES[@]}" \
        "${TRIM[@]}" ;;
    quarter)
      train quarter "${DEFAULT[@]}" --config.model.a_init=lin_quarter
      deploy quarter deploy_residual "${DEFAULT[@]}" --config.model.a_init=lin_quarter "${RES[@]}" ;;
    quarter_trim)
      train quarter "${DEFAULT[@]}" --config.model.a_init=lin_quarter
      deploy quarter deploy_residual_trim "${DEFAULT[@]}" --config.model.a_init=lin_quarter \
        "${RES[@]}" "${TRIM[@]}" ;;
    # (d) A real-valued, decay-only recurrence (S4D-Real: a_n = -(n + 1), Im a held at 0).
    real)
      train real "${DEFAULT[@]}" --config.model.a_init=real
      deploy real deploy_residual "${DEFAULT[@]}" --config.model.a_init=real "${RES[@]}" ;;
    real_trim)
      train real "${DEFAULT[@]}" --config.model.a_init=real
      deploy real deploy_residual_trim "${DEFAULT[@]}" --config.model.a_init=real "${RES[@]}" \
        "${TRIM[@]}" ;;
    # (c) Noise-aware fine-tuning with a_bar - 1 on the arrays and the device's own noise.
    na_pcm)
      train float "${DEFAULT[@]}"
      train na_pcm --config=configs/noise_aware.py "${FINETUNE[@]}" "${RES[@]}" \
        --config.hardware.ramp_epochs=2 --config.hardware.eval_seeds=2
      deploy na_pcm deploy_residual --config=configs/noise_aware.py "${RES[@]}" ;;
    na_rram)
      train float "${DEFAULT[@]}"
      train na_rram --config=configs/noise_aware.py "${FINETUNE[@]}" "${RES[@]}" \
        --config.hardware.device=rram_taox --config.hardware.ramp_epochs=2 \
        --config.hardware.eval_seeds=2
      deploy na_rram deploy_residual --config=configs/noise_aware.py "${RES[@]}" \
        --config.hardware.device=rram_taox ;;
    # Drift of the best PCM recipe, 1 s to 1 day (the deployment itself is t_inference = 1 h).
    drift)
      train float "${DEFAULT[@]}"
      deploy float deploy_residual_trim_drift "${DEFAULT[@]}" "${RES[@]}" "${TRIM[@]}" \
        --config.deploy.devices=pcm_like "--config.deploy.drift_times=(1,60,86400)" ;;
    # The same, the trim measured once at 20 s (t0 of the PCM drift law) and left alone.
    drift_trim20)
      train float "${DEFAULT[@]}"
      deploy float deploy_residual_trim20_drift "${DEFAULT[@]}" "${RES[@]}" "${TRIM[@]}" \
        --config.deploy.gain_time_s=20 --config.deploy.devices=pcm_like \
        "--config.deploy.drift_times=(1,60,86400)" ;;
    *) echo "unknown row $1" >&2; return 1 ;;
  esac
  echo "$1 done"
}

ROWS=(float_digital float_residual float_direct float_residual_trim float_direct_trim
  float_residual_trim16 float_residual_trim_x20 float_residual_g50 float_residual_trim_g80
  float_residual_trim_g50 qat_abar4 qs4d_a4 small_slow small_slow_trim small8 small8_trim quarter
  quarter_trim real real_trim na_pcm na_rram drift
  drift_trim20)
for r in "${@:-${ROWS[@]}}"; do row "$r"; done
