r"""Sweep of weight bit widths on digits: one population trained by one compiled program.

  python launch.py --config=configs/sweep_bits.py --workdir=runs/sweep_bits --mode=sweep
  python launch.py --config=configs/sweep_bits.py:smoke --workdir=/tmp/sweep --mode=sweep

(`--mode=sweep` calls `ssm_aimc.sweep.run_sweep(config, workdir)`.) Writes sweep.csv (one
row per grid point), sweep.json and the plots sweep_accuracy_vs_bits.png and
sweep_accuracy_vs_memory.png (Pareto front).

The default grid is 4 weight widths (8, 4, 3, 2; activations and a_bar at 8 bits, per
channel steps) x 2 seeds = 8 members of a 2-layer H=32, N=16 model trained from scratch
for 20 epochs at peak learning rate 2e-2, all 8 in one program. Measured 2026-11-25 on the
2-core CPU while another training job shared it (load average 3-4): 1 min 20 s in all
with the default strategy (auto = separate); test accuracy (seeds 0 / 1) 96.9 /
97.2 % at 8 bits (3.3x less memory than FP32), 97.2 / 98.1 % at 4 bits (5.4x), 95.3 /
95.8 % at 3 bits (6.8x), 89.2 / 88.1 % at 2 bits (9.2x). With
`--config.sweep.strategy=vmap` (load average ~5): 2 min 47 s, 96.7 / 96.4, 96.9 / 96.7,
95.6 / 95.8 and 93.1 / 91.4 % (a quantized run amplifies the rounding differences
between the batched and the unbatched program, so at 2 bits the same member can land a
few points apart, as different seeds do).
Variants: `smoke` (2 widths, 1 seed, 1 epoch, tiny model: seconds) and
`noise` (hardware on: the same widths evaluated on the PCM-like device at noise scales
0, 0.5, 1 and 2, 8 chips each).

Every axis of the `sweep` section is a tuple; an empty one is not swept. Members differ
only in traced numbers (bit widths, noise scales, learning rate, seed); structural axes
(d_model, d_state, n_layers) get one program each.
"""

import ml_collections

from ssm_aimc import quant
from ssm_aimc.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in ("", "smoke", "noise"):
    raise ValueError(f"Unknown variant {variant!r} of configs/sweep_bits.py; valid: smoke, noise.")
  config = default.get_config()
  config.model.d_model = 32
  config.model.n_layers = 2
  config.model.d_state = 16
  config.num_epochs = 20
  config.quant.enabled = True
  config.quant.mode = "channel"
  config.optimizer.learning_rate = 2e-2
  config.quant.act_bits = 8
  config.quant.a_bar_bits = 8
  config.hardware.eval_seeds = 8
  config.hardware.seeds_per_call = 8

  config.sweep = ml_collections.ConfigDict()
  config.sweep.weight_bits = (8, 4, 3, 2)  # config.quant.weight_bits of every member.
  config.sweep.act_bits = ()  # config.quant.act_bits (activations, biases, state).
  config.sweep.a_bar_bits = ()  # config.quant.a_bar_bits (the recurrent coefficient).
  # One axis per tensor group (quant.GROUPS), overriding the three above for that group.
  config.sweep.group_bits = ml_collections.ConfigDict({g: () for g in quant.GROUPS})
  # x programming and read noise of config.hardware (needs hardware.enabled): a training
  # axis with hardware.train (noise-aware training), else an evaluation axis.
  config.sweep.noise_scales = ()
  config.sweep.learning_rates = ()  # Peak learning rates (optax.inject_hyperparams).
  config.sweep.seeds = (0, 1)  # config.seed: init, dropout and batch order.
  config.sweep.d_model = ()  # Structural axes: one compiled program per combination.
  config.sweep.d_state = ()
  config.sweep.n_layers = ()
  # auto (= separate, the fastest measured on CPU and GPU) | vmap | map (lax.map) | separate.
  config.sweep.strategy = "auto"
  config.sweep.chunk_size = 0  # Members per compiled call (memory); 0 = all at once.
  config.sweep.shard = True  # Shard the population over all devices when several.
  config.sweep.plots = True  # Write the PNG plots.
  # With a workdir a sweep is resumable: its populations are saved every
  # checkpoint_every_epochs epochs and, when > 0, also every this many steps.
  config.sweep.checkpoint_every_steps = 0

  if variant == "smoke":
    config.model.d_model = 16
    config.model.n_layers = 1
    config.model.d_state = 4
    config.num_epochs = 1
    config.batch_size = 64
    config.sweep.weight_bits = (8, 2)
    config.sweep.seeds = ()
  elif variant == "noise":
    config.hardware.enabled = True
    config.sweep.noise_scales = (0.0, 0.5, 1.0, 2.0)
  return config
