"""Every config file loads, derives from the default, and rejects unknown variants."""

import importlib
import math
import os

import pytest

from configs import default, qs4d
from ssm_aimc import configs, errors, experiment, train
from tests import test_data

SHIMS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
CONFIGS = [
  "default",
  "mnist5k",
  "mnist1d",
  "smnist",
  "scifar",
  "qat_w8a8",
  "qat_w4a8",
  "qat_ternary",
  "qs4d",
  "imssa_chip",
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
  for name in ("default", "mnist5k", "smnist", "scifar", "qs4d"):
    with pytest.raises(ValueError, match="variant"):
      importlib.import_module(f"configs.{name}").get_config("bogus")


def test_qat_configs_quantize_what_their_names_say():
  for name, bits in (("qat_w8a8", 8), ("qat_w4a8", 4), ("qat_ternary", 2)):
    spec = experiment.from_config(
      importlib.import_module(f"configs.{name}").get_config()
    ).quant.spec
    assert float(spec.glu.bits) == bits and float(spec.activations.bits) == 8


@pytest.mark.parametrize("variant", ("",) + qs4d.VARIANTS)
def test_qs4d_variants_are_the_authors_backbone_and_optimizer(variant):
  exp = experiment.from_config(qs4d.get_config(variant))
  model, opt = exp.model, exp.optimizer
  assert (model.norm, model.prenorm, model.residual, model.a_init) == (
    "batch",
    True,
    False,
    "lin_quarter",
  )
  assert model.train_b is False and model.pooling == "mean"
  assert (exp.quant.enabled, exp.quant.scheme) == (False, "qs4d")
  assert (opt.warmup_epochs, opt.end_lr_fraction, opt.grad_clip) == (0.0, 0.0, 0.0)
  (pattern, multiplier, decay), *others = opt.rules
  assert pattern == qs4d.SSM_PARAMS and decay == 0.0 and len(others) == 1
  assert opt.learning_rate * multiplier == pytest.approx(min(1e-3, opt.learning_rate))
  sizes = (model.n_layers, model.d_model, model.d_state)
  expected = {
    "paper_scifar": ((4, 128, 128), "glu", "scifar", 1e-2, 0.05),
    "paper_pathfinder": ((6, 256, 64), "glu", "pathfinder", 4e-3, 0.03),
    "paper_hd": ((4, 128, 64), "glu", "hd", 1e-2, 0.05),
    "paper_hd_small": ((1, 3, 28), "relu", "hd", 1e-2, 0.05),
  }.get(variant)
  if expected is not None:
    assert (sizes, model.activation, exp.data.task) == expected[:3]
    assert (opt.learning_rate, opt.weight_decay) == pytest.approx(expected[3:])
  assert exp.data.grayscale == (variant == "paper_scifar")
  assert exp.data.hd_subsample == {"paper_hd": 8, "paper_hd_small": 64}.get(variant, 1)
  assert exp.data.hd_classes == ((0, 1) if variant == "paper_hd_small" else ())


PAPER_FILES = {
  "paper_scifar": test_data._fake_cifar,
  "paper_pathfinder": test_data._fake_pathfinder,
  "paper_hd": lambda d: test_data._fake_hd(d, test_data._HD_TRAIN, test_data._HD_TEST),
  "paper_hd_small": lambda d: test_data._fake_hd(d, test_data._HD_TRAIN, test_data._HD_TEST),
}


@pytest.mark.parametrize("variant", sorted(PAPER_FILES))
def test_qs4d_paper_variant_trains_an_epoch_on_tiny_files(tmp_path, variant):
  """Each paper variant reads its task's local files and trains end to end (its model
  shrunk here, the rest as the variant has it)."""
  data_dir = str(tmp_path / "data")
  PAPER_FILES[variant](data_dir)
  exp = experiment.override(
    experiment.from_config(qs4d.get_config(variant)),
    {
      "data.data_dir": data_dir,
      "data.val_fraction": 0.25,
      "model.n_layers": 1,
      "model.d_model": 4,
      "model.d_state": 4,
      "num_epochs": 1,
      "batch_size": 2,
      "eval_batch_size": 16,
      "progress_bar": False,
    },
  )
  results = train.train_and_evaluate(exp, str(tmp_path / "run"))
  assert 0.0 <= results["test_accuracy"] <= 1.0 and math.isfinite(results["test_loss"])


def test_each_config_has_one_source_with_a_clone_shim():
  """Every packaged config (ssm_aimc/configs) has a shim in the clone's configs/ that
  re-exports it, and the clone's configs/ holds nothing else."""
  shims = {
    os.path.relpath(os.path.join(folder, f), SHIMS).removesuffix(".py")
    for folder, _, files in os.walk(SHIMS)
    for f in files
    if f.endswith(".py") and f not in ("__init__.py", "common.py")
  }
  assert shims == set(configs.names())
  for name in configs.names():
    module = name.replace("/", ".")
    shim = importlib.import_module(f"configs.{module}")
    packaged = importlib.import_module(f"ssm_aimc.configs.{module}")
    assert shim.get_config is packaged.get_config, name


def test_packaged_config_names_resolve_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  packaged = configs.path("default")
  assert packaged == os.path.join(os.path.dirname(configs.__file__), "default.py")
  for name in ("default", "default.py", "configs/default.py"):
    assert configs.resolve(f"{name}:smoke") == packaged + ":smoke"
  assert configs.resolve("claims/c1_cost") == configs.path("claims/c1_cost.py")
  assert configs.path("claims/c1_cost").endswith(os.path.join("claims", "c1_cost.py"))
  (tmp_path / "default.py").write_text("")  # A file of that name wins.
  assert configs.resolve("default.py:smoke") == "default.py:smoke"
  with pytest.raises(errors.ConfigError, match=r"packaged configs: claims/c1_cost, .* default"):
    configs.resolve("defualt:smoke")
