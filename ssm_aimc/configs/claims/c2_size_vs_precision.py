r"""Claim 2: model size trades against numerical precision (the iso-memory frontier).

  python launch.py --config=configs/claims/c2_size_vs_precision.py --workdir=runs/claims/c2 \
      --mode=claim
  python launch.py --config=configs/claims/c2_size_vs_precision.py:paper \
      --workdir=runs/claims_paper/c2 --mode=claim --config.data.data_dir=/path/to/mnist

One population sweep (ssm_aimc.sweep, `--mode=sweep` underneath) of 2-layer S4D models
trained from scratch with QAT: H in (16, 32, 64) x N in (8, 32) x weight bits in (8, 4, 2)
(activations and a_bar at 8 bits, per-channel steps), 20 epochs each; then the Pareto front
of accuracy against memory bits and every iso-memory pair (memories within 1.5x) of a
bigger low-precision model against a smaller high-precision one. The paper variant sweeps
4-layer models, H in (64, 128, 256) x N in (16, 64), on sMNIST. Judged by
`ssm_aimc.claims.c2_size_vs_precision`.

Measured verdict, numbers and runtime on this project's CPU: CLAIMS.md (`make reproduce`).
"""

import ml_collections

from ssm_aimc import quant
from ssm_aimc.configs.claims import common


def get_config(variant: str = ""):
  config = common.base(variant, "c2_size_vs_precision.py")
  if variant != "paper":  # The paper variant keeps the reference depth (4 layers).
    config.model.n_layers = 2
  config.quant.enabled = True
  config.quant.mode = "channel"
  config.quant.act_bits = 8
  config.quant.a_bar_bits = 8
  if variant != "paper":
    config.num_epochs = {"": 20, "mnist5k": 10}.get(variant, 1)
    config.optimizer.learning_rate = 2e-2
  sizes = {
    "": ((16, 32, 64), (8, 32)),
    "paper": ((64, 128, 256), (16, 64)),
    "smoke": ((8, 16), (4,)),
    "mnist5k": ((16, 32), (8, 16)),
  }
  config.sweep = ml_collections.ConfigDict(
    {
      "weight_bits": (8, 2) if variant == "smoke" else (8, 4, 2),
      "act_bits": (),
      "a_bar_bits": (),
      "group_bits": {g: () for g in quant.GROUPS},
      "noise_scales": (),
      "learning_rates": (),
      "seeds": (),
      "d_model": sizes[variant][0],
      "d_state": sizes[variant][1],
      "n_layers": (),
      "strategy": "auto",
      "chunk_size": 0,
      "shard": True,
      "plots": True,
    }
  )
  return common.add_claim(
    config,
    variant,
    "c2",
    (),
    iso_tolerance=1.5,  # Two memories within this factor count as the same budget.
  )
