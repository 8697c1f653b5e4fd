r"""Claim 5: the model deploys on a memristive crossbar with large efficiency gains.

  python launch.py --config=configs/claims/c5_deployment.py --workdir=runs/claims/c5 \
      --mode=claim
  python launch.py --config=configs/claims/c5_deployment.py:paper \
      --workdir=runs/claims_paper/c5 --mode=claim --config.data.data_dir=/path/to/mnist

`make demo`'s pipeline, judged: the float model and its QAT W4A8 + noise-aware fine-tune,
both deployed (`--mode=deploy`) on 20 simulated PCM-like and 20 RRAM-like chips each, run
step by step with 8-bit DACs and ADCs on 64x64 tiles (config.deploy), recurrence in the
digital periphery; energy per inference against FP32 and INT8 digital processors. Judged
by `ssm_aimc.claims.c5_deployment`. Beside the verdict, the float model deployed again with
the recurrence on the arrays (hardware.recurrence=residual: a_bar - 1 in the devices, the
state through the converters every step) and the per-mode gain trim
(deploy.recurrence_gain=decay).

Measured verdict, numbers and runtime on this project's CPU: CLAIMS.md (`make reproduce`).
"""

from ssm_aimc.configs.claims import common


def get_config(variant: str = ""):
  config = common.base(variant, "c5_deployment.py")
  if variant == "smoke":
    config.deploy.seeds = 2
    config.deploy.seeds_per_call = 2
  return common.add_claim(
    config,
    variant,
    "c5",
    ("float", "noise_aware_w4a8"),
    deployed="noise_aware_w4a8",
    max_gap_points=2.0,  # Chip accuracy within this of software on every preset.
    min_energy_gain=10.0,  # "Large": at least 10x less energy than FP32 digital.
    # Beside the verdict: the float model again with a_bar - 1 on the arrays and each
    # mode's decay trimmed after programming (README "The recurrence on the arrays").
    arrays_model="float",
    arrays_recurrence="residual",
    arrays_gain="decay",
  )
