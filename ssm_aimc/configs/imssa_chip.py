r"""The predecessor paper's chip model (IMSSA, arXiv 2412.20215) on an embedded binary task.

The predecessor ran one S4D layer (H = 3, N <= 28, ReLU) on three 64x64 memristive arrays
with the recurrence fed back through the arrays, on Heidelberg Digits 0 vs 1
(configs/qs4d.py:paper_hd_small, which needs the local HD files). This config is that
model (qs4d.py's paper_hd_small backbone: BatchNorm prenorm, no skip, S4D-Lin at pi/4 n,
B fixed, dropout 0.1, 100 epochs) on a task that is generated locally: mnist1d digits 0 vs
1 (`data.classes`, relabelled 0/1; 725 train, 81 val, 194 test sequences of L = 40). Why
mnist1d: it is a 1-D signal like HD's audio, nothing is downloaded, and its 194 test
sequences give a finer accuracy grid than digits' 73 (`:digits` runs digits 0 vs 1).

The chip: 64x64 differential tiles, 8-bit DACs and ADCs, recurrence `residual` (the arrays
hold a_bar - 1, the identity is a digital add; `direct` measured worse, README), and
`deploy.share_tiles`, which lets the small matrices share tiles on disjoint rows and
columns: 3 tiles. N = 28 is the largest state that fits them (N = 30 needs 4;
tests/test_imssa_chip.py counts both with the mapping --mode=deploy uses).

  python launch.py --config=configs/imssa_chip.py --workdir=runs/imssa_chip
  python launch.py --config=configs/imssa_chip.py --workdir=runs/imssa_chip --mode=deploy
  python launch.py --config=configs/imssa_chip.py --workdir=runs/imssa_chip --mode=deploy \
      --config.hardware.recurrence=direct --config.deploy.folder=deploy_direct
  python launch.py --config=configs/imssa_chip.py:smoke --workdir=/tmp/imssa_smoke  # 36 s

Measured (README "The predecessor's chip"), seed 0, 20 chips per preset, mean +- std:
software 96.39 %; residual: RRAM-like 96.37 +- 0.20 %, PCM-like 96.39 +- 1.12 %, 3 tiles,
10.84 nJ per inference; direct: 96.21 +- 0.70 % and 90.75 +- 4.97 %, 10.06 nJ. Training
67 s, each deployment 67-85 s on the 2-core CPU shared with other jobs.
"""

from ssm_aimc.configs import qs4d

VARIANTS = ("smoke", "digits")
# The largest state that fits three 64x64 differential tiles with the recurrence on the
# arrays and deploy.share_tiles (tests/test_imssa_chip.py maps it): per channel a
# (N+1) x N recurrence block and an (N+1) x 1 read-out column, 2 N + 2 <= 64 - 6 rows.
D_STATE = 28


def get_config(variant: str = ""):
  if variant not in ("",) + VARIANTS:
    raise ValueError(f"Unknown variant {variant!r} of configs/imssa_chip.py; valid: {VARIANTS}.")
  config = qs4d.get_config("paper_hd_small")
  config.data.task = "mnist1d"
  config.data.classes = (0, 1)
  config.data.hd_classes = ()
  config.data.hd_subsample = 1
  config.model.d_state = D_STATE
  config.log_every_steps = 20
  config.hardware.recurrence = "residual"
  config.deploy.devices = ("rram_taox", "pcm_like")
  config.deploy.seeds = 20
  config.deploy.tile_rows = config.deploy.tile_cols = 64
  config.deploy.share_tiles = True
  if variant == "digits":
    config.data.task = "digits"
  elif variant == "smoke":
    config.num_epochs = 2
    config.deploy.seeds = 2
  return config
