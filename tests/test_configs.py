"""Every config file loads, derives from the default, and rejects unknown variants."""

import importlib

import pytest

from configs import default
from ssm_aimc import experiment

CONFIGS = [
  "default",
  "mnist5k",
  "mnist1d",
  "smnist",
  "scifar",
  "qat_w8a8",
  "qat_w4a8",
  "qat_ternary",
]


def _flat_keys(config, prefix=""):
  keys = set()
  for k, v in config.items():
    if hasattr(v, "items"):
      keys |= _flat_keys(v, f"{prefix}{k}.")
    else:
      keys.add(f"{prefix}{k}")
  return keys


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_validates_and_has_exactly_the_default_fields(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  experiment.from_config(config)
  assert _flat_keys(config) == _flat_keys(default.get_config())


def test_variants():
  assert default.get_config("smoke").num_epochs < default.get_config().num_epochs
  importlib.import_module("configs.smnist").get_config("permuted")
  for name in ("default", "mnist5k", "smnist", "scifar"):
    with pytest.raises(ValueError, match="variant"):
      importlib.import_module(f"configs.{name}").get_config("bogus")


def test_qat_configs_quantize_what_their_names_say():
  for name, bits in (("qat_w8a8", 8), ("qat_w4a8", 4), ("qat_ternary", 2)):
    spec = experiment.from_config(
      importlib.import_module(f"configs.{name}").get_config()
    ).quant.spec
    assert float(spec.glu.bits) == bits and float(spec.activations.bits) == 8
