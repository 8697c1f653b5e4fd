"""The typed Experiment (ssm_aimc.experiment): defaults are configs/default.py's, a config
round-trips through config.json, unknown keys are errors wherever the config comes from,
variants recompute their specs."""

import dataclasses
import json

import ml_collections
import pytest

from configs import default, sweep_bits
from ssm_aimc import errors, experiment, quant
from ssm_aimc.hardware import devices


def test_the_dataclass_defaults_are_the_default_config():
  # A field added to one but not the other, or a default changed in one, fails here.
  assert experiment.from_config(default.get_config()) == experiment.Experiment()
  assert set(experiment.to_dict(experiment.Experiment())) == set(default.get_config().keys())


@pytest.mark.parametrize("config", [default.get_config(), sweep_bits.get_config("noise")])
def test_round_trip_through_config_json(config):
  exp = experiment.from_config(config)
  stored = json.loads(json.dumps(experiment.to_dict(exp)))
  assert experiment.from_config(stored) == exp
  assert stored == json.loads(json.dumps(config.to_dict()))


def test_unknown_keys_raise_with_the_closest_valid_name():
  config = default.get_config()
  config.quant.weight_bit = 4  # A typo in a Python-built (unlocked) ConfigDict.
  with pytest.raises(
    errors.ConfigError, match="'quant.weight_bit'; did you mean 'quant.weight_bits'"
  ):
    experiment.from_config(config)
  tree = experiment.to_dict(experiment.Experiment())
  tree["hardware"]["noise_scales"] = (1.0,)  # The old name of prog_noise_scales.
  with pytest.raises(errors.ConfigError, match="did you mean 'hardware.prog_noise_scales'"):
    experiment.from_config(tree)
  with pytest.raises(errors.ConfigError, match="'bogus'"):
    experiment.from_config({"bogus": 1})
  with pytest.raises(errors.ConfigError, match="'model.d_modle'"):
    experiment.override(experiment.Experiment(), {"model.d_modle": 8})


def test_override_returns_a_validated_copy():
  base = experiment.Experiment()
  exp = experiment.override(base, {"quant.enabled": True, "quant.group_bits.c": 3, "seed": 2})
  assert (exp.seed, base.seed) == (2, 0)
  spec = exp.quant.spec
  assert float(spec.c.bits) == 3 and float(spec.glu.bits) == base.quant.weight_bits
  with pytest.raises(errors.ConfigError, match="bits"):
    experiment.override(base, {"quant.group_bits.c": 17.5})
  with pytest.raises(errors.ConfigError, match="d_state"):
    experiment.override(base, {"model.d_state": 7})


def test_a_variant_recomputes_its_specs():
  hw = experiment.override(experiment.Experiment(), {"hardware.enabled": True}).hardware
  rram = dataclasses.replace(hw, device="rram_taox")
  assert hw.spec.device.name == "pcm_like" and rram.spec.device.name == "rram_taox"
  assert hw.spec.summary()["device"]["name"] == "pcm_like"
  assert experiment.Experiment().hardware.spec is None  # Disabled: no analog substrate.
  assert experiment.Experiment().quant.spec is None


def test_a_disabled_section_is_still_checked():
  with pytest.raises(errors.ConfigError, match="prog_noise_scale"):
    experiment.override(experiment.Experiment(), {"hardware.prog_noise_scale": -1.0})
  with pytest.raises(errors.ConfigError, match="Unknown device"):
    experiment.override(experiment.Experiment(), {"hardware.device": "flash"})


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("deploy.tile_rows", 0, "deploy.tile_rows must be an integer >= 1, got 0"),
    ("deploy.tile_cols", 7, "deploy.tile_cols must be an even number with deploy.differential"),
  ],
)
def test_deploy_tile_errors_name_the_config_field(field, value, message):
  with pytest.raises(errors.ConfigError, match=message):
    experiment.override(experiment.Experiment(), {field: value})
  experiment.override(experiment.Experiment(), {field: 7, "deploy.differential": False})


def test_deploy_mapping_reaches_the_chip_and_an_unknown_one_is_refused():
  exp = experiment.override(experiment.Experiment(), {"deploy.mapping": "packed"})
  assert exp.deploy.chip.mapping == "packed"
  assert experiment.Experiment().deploy.chip.mapping == "diagonal"  # Today's layout.
  with pytest.raises(errors.ConfigError, match="Unknown deploy.mapping 'shelf'"):
    experiment.override(experiment.Experiment(), {"deploy.mapping": "shelf"})


def test_bit_width_vocabulary_zero_is_unset():
  exp = experiment.override(experiment.Experiment(), {"quant.enabled": True})
  assert dict(exp.quant.group_bits) == {g: 0 for g in quant.GROUPS}  # 0: inherit.
  assert exp.hardware.spec_on(devices.IDEAL).dac is False  # 0: no converter.
  assert exp.hardware.spec_on(devices.IDEAL, dac_bits=8).dac is True


def test_a_config_section_of_the_wrong_kind_is_a_config_error():
  config = default.get_config()
  with config.unlocked():
    config.model = ml_collections.ConfigDict({"d_model": {"nested": 1}})
  with pytest.raises(errors.ConfigError):
    experiment.from_config(config)


def test_the_qs4d_scheme_and_its_groups():
  base = experiment.Experiment()
  qs4d = {"quant.enabled": True, "quant.scheme": "qs4d"}
  exp = experiment.override(
    base, {**qs4d, "quant.weight_bits": 2, "quant.a_bar_bits": 1, "quant.group_bits.log_dt": 3}
  )
  spec = exp.quant.spec
  assert spec.scheme == "qs4d" and base.quant.scheme == "ssm_aimc"
  widths = {g: float(getattr(spec, g).bits) for g in ("a", "log_dt", "c", "a_bar", "b_bar")}
  assert widths == {"a": 1.0, "log_dt": 3.0, "c": 2.0, "a_bar": 32.0, "b_bar": 32.0}
  # A width for a group the scheme leaves float is a mistake, not silently ignored.
  with pytest.raises(errors.ConfigError, match="scheme 'qs4d' does not quantize b_bar"):
    experiment.override(base, {**qs4d, "quant.group_bits.b_bar": 4})
  with pytest.raises(errors.ConfigError, match="scheme 'ssm_aimc' does not quantize a;"):
    experiment.override(base, {"quant.group_bits.a": 4})
  with pytest.raises(errors.ConfigError, match="per-tensor absmax"):
    experiment.override(base, {**qs4d, "quant.mode": "lsq"})
  with pytest.raises(errors.ConfigError, match="quant.scheme 'bitnet'; valid"):
    experiment.override(base, {"quant.scheme": "bitnet"})
