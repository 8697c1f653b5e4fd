r"""Claim 4 as the QS4D authors measured it (their Fig. "Pruning"): the share of each kind
of weight that greedy pruning removes within one point, per layer and for the whole model,
at 7 bit, 10 bit and float under their quantization scheme, over three training seeds.

  python launch.py --config=configs/claims/c4_qs4d.py --workdir=runs/claims/c4_qs4d \
      --mode=claim

2-layer S4D models on digits (H = 32, N = 16, 20 epochs, peak learning rate 2e-2: the size
of configs/claims/c2_qs4d.py), each trained from scratch in float or with QAT of every
group at 10 or 7 bits (quant.scheme = "qs4d"), seeds 0, 1, 2. Each model is then pruned
greedily (`ssm_aimc.greedy`) three times from its unpruned self, one kind each: entries of
the mixing layers ("linear"), single modes of one channel ("unstructured kernel": c[h, n])
and whole modes of a layer ("structured kernel": c[:, n] in every channel). Candidates go
lowest score first (|w|; the H2 energy of the deployed modes), layer by layer; one stays at
zero while the VALIDATION accuracy is within claim.tolerance_points of the unpruned
model's (the authors judged on the test split); the test accuracy of the pruned model is
reported.

`:mnist5k` (L = 784): the same on the mnist5k base (2 layers, H = 16, N = 16, 5 epochs),
seed 0 only: every candidate evaluation runs 784 steps over the validation split.

Judged by `ssm_aimc.claims.c4_qs4d` with the rule fixed here before the run: supported if
the structured share of the whole model at the lowest width is at least
claim.min_gain x the float share (means over seeds) AND the two seed ranges do not
overlap; partly supported if only the first holds.
"""

from ssm_aimc.configs.claims import common


def get_config(variant: str = ""):
  config = common.base(variant, "c4_qs4d.py")
  smoke, long = variant == "smoke", variant == "mnist5k"
  common.cpu_qs4d_size(config, variant)
  if long:
    config.model.d_model = 16  # Every candidate runs 784 steps: half the width.
  return common.add_claim(
    config,
    variant,
    "c4_qs4d",
    (),
    bits=(32, 10, 7),  # 32: float. The authors' panels: fp, 10 bit, 7 bit.
    seeds=(0,) if long or smoke else (0, 1, 2),
    kinds=("linear", "unstructured", "structured"),
    tolerance_points=1.0,  # Validation accuracy lost that still counts as "within".
    max_batch=1,  # Masks per call: 1 and 4 tie on this CPU, 16 is 1.9x slower (BENCHMARKS).
    min_gain=1.5,  # The verdict: structured share at the lowest width >= this x float's.
  )
