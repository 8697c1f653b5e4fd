r"""Claim 3: QAT makes models more robust to analog noise.

  python launch.py --config=configs/claims/c3_robustness.py --workdir=runs/claims/c3 \
      --mode=claim
  python launch.py --config=configs/claims/c3_robustness.py:paper \
      --workdir=runs/claims_paper/c3 --mode=claim --config.data.data_dir=/path/to/mnist

The float model, its QAT W4A8 fine-tune and its QAT W4A8 + noise-aware fine-tune (PCM-like
noise during training), each evaluated on the same 10 simulated PCM-like chips at
programming-noise scales 0, 1, 2 and 4 (drift to 1 h with compensation, read noise at
every product, a_bar digital). Judged by `ssm_aimc.claims.c3_robustness`.

Measured verdict, numbers and runtime on this project's CPU: CLAIMS.md (`make reproduce`).

With `--config.data.task=mnist1d` (2026-11-30, 8.6 min from nothing, another machine):
not supported; at 4x float drops 6.60, QAT W4A8 5.82 and noise-aware QAT 6.90 points,
each +- 2.5-3.7 over chips (README "Status").
"""

from ssm_aimc.configs.claims import common


def get_config(variant: str = ""):
  config = common.base(variant, "c3_robustness.py")
  return common.add_claim(
    config,
    variant,
    "c3",
    ("float", "qat_w4a8", "noise_aware_w4a8"),
    baseline="float",
    qat="qat_w4a8",
    noise_aware="noise_aware_w4a8",
    device="pcm_like",
    prog_noise_scales=(0.0, 1.0) if variant == "smoke" else (0.0, 1.0, 2.0, 4.0),
    chips={"": 10, "paper": 20, "smoke": 2, "mnist5k": 10}[variant],
  )
