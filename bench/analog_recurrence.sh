set -e
# Evaluates a float digits checkpoint with a_bar held in analog devices (README, "The
# recurrence on the crossbar"). Usage: bash bench/analog_recurrence.sh WORKDIR OUT
# (WORKDIR: a trained digits run, e.g. runs/noise/digits/seed0/float; its
# results_evaluate.json is overwritten; copies land in OUT).
W=${1:?workdir}; OUT=${2:?output folder}; mkdir -p "$OUT"
E="--config=configs/default.py --workdir=$W --mode=evaluate --config.hardware.enabled=True --config.progress_bar=False"
.venv/bin/python launch.py $E --config.hardware.recurrence=residual --config.hardware.eval_seeds=5 "--config.hardware.prog_noise_scales=(0,1)" > /dev/null 2>&1; cp $W/results_evaluate.json $OUT/pcm_residual.json
.venv/bin/python launch.py $E --config.hardware.recurrence=direct --config.hardware.eval_seeds=5 "--config.hardware.prog_noise_scales=(0,1)" > /dev/null 2>&1; cp $W/results_evaluate.json $OUT/pcm_direct.json
.venv/bin/python launch.py $E --config.hardware.recurrence=residual --config.hardware.drift=False --config.hardware.read_noise_scale=0 --config.hardware.eval_seeds=5 "--config.hardware.prog_noise_scales=(0.1,0.3,1)" > /dev/null 2>&1; cp $W/results_evaluate.json $OUT/pcm_residual_prog_only.json
.venv/bin/python launch.py $E --config.hardware.device=rram_taox --config.hardware.recurrence=residual --config.hardware.eval_seeds=20 "--config.hardware.prog_noise_scales=(0,0.5,1,2,4)" > /dev/null 2>&1; cp $W/results_evaluate.json $OUT/rram_residual.json
echo done
