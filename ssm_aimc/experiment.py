"""An experiment as one typed, frozen value: every section of a config, validated once.

The ml_collections ConfigDict stops here. `from_config(config)` reads a ConfigDict, or a
nested dict such as a run's config.json, into an `Experiment` of frozen dataclasses:

  Experiment      seed, model name, batch sizes, epochs, logging (metrics.jsonl, and
                  TensorBoard with log_tensorboard) and checkpoint settings
    .data         data.DataConfig
    .model        models.ModelConfig
    .optimizer    optim.OptimConfig
    .quant        QuantConfig      .spec: the quant.QuantSpec (None when disabled)
    .hardware     HardwareConfig   .spec: the analog.AnalogSpec (None when disabled)
    .prune        pruning.PruneConfig
    .deploy       DeployConfig     .chip: the chip.ChipConfig; .energy
    .sweep        SweepConfig      (sweep configs only; ssm_aimc.sweep)
    .claim        the claim section as a nested dict (claim configs only; ssm_aimc.claims)

Each dataclass checks its values when it is made, so an Experiment that exists is valid. A
key that no section has is a ConfigError naming the closest valid key, for a config from
the command line and one built in Python alike. Variants: `override(exp, {"quant.weight_bits":
4})` with dotted paths as on the command line, or `dataclasses.replace` on a section. The
specs are computed from the fields, so a variant never keeps a stale flag (e.g. after the
hardware device changes). `to_dict(exp)` is a run's config.json: from_config(to_dict(exp))
equals exp.

Bit widths, one vocabulary: a width of 0 means "not set" (a converter that is not there, a
tensor group that inherits its section's width) and a width >= 16 means float, exactly
(`quant.OFF_THRESHOLD`). Noise scales, one vocabulary: a `noise_scale` multiplies the
device's programming AND read noise (`analog.AnalogSpec.scaled`), a `prog_noise_scale` the
programming noise alone, a `read_noise_scale` the read noise alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import types
import typing
from collections.abc import Mapping

from ssm_aimc import chip, data, errors, models, optim, pruning, quant
from ssm_aimc.hardware import analog, crossbar, devices, energy


def _fail(name: str, expect: str, value):
  raise errors.ConfigError(f"{name} must be {expect}, got {value!r}.")


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _ints(section, where: str, low: int, *names: str) -> None:
  """Each field of `names` is an integer >= low."""
  for name in names:
    value = getattr(section, name)
    if not (_is_int(value) and value >= low):
      _fail(f"{where}{name}", f"an integer >= {low}", value)


def _non_negative(section, where: str, *names: str) -> None:
  """Each field of `names` (a number or a tuple of numbers) is finite and >= 0."""
  for name in names:
    value = getattr(section, name)
    if not all(_is_number(v) and v >= 0 for v in (value if isinstance(value, tuple) else (value,))):
      _fail(f"{where}{name}", "finite and >= 0", value)


def _one_of(name: str, value, allowed) -> None:
  allowed = tuple(allowed)
  if value not in allowed:
    raise errors.ConfigError(f"Unknown {name} {value!r}; valid: {allowed}.")


def _widths(name: str, values, unset_allowed: bool = False) -> None:
  """Bit widths (quant.validate_bits); 0, "not set", where `unset_allowed`."""
  for v in values:
    if not (unset_allowed and v == 0):
      try:
        quant.validate_bits(v)
      except errors.ConfigError as e:
        raise errors.ConfigError(f"{name}: {e}") from e


def _prefixed(where: str, check) -> None:
  """Runs a check that raises the owner's ConfigError, naming the section in front."""
  try:
    check()
  except errors.ConfigError as e:
    raise errors.ConfigError(f"{where}: {e}") from e


# ---------------------------------------------------------------------------------------
# Sections of the config that the core does not own (fields: configs/default.py).
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QuantConfig:
  """`config.quant`: quantization-aware training (and PTQ in --mode=evaluate).
  `group_bits` holds (group, bits) for every group of `quant.GROUPS` (0: inherit)."""

  enabled: bool = False
  weight_bits: int = 8
  act_bits: int = 8
  a_bar_bits: int = 8
  mode: str = "tensor"
  a_bar_param: str = "polar"
  scheme: str = "ssm_aimc"
  group_bits: tuple[tuple[str, int], ...] = tuple((g, 0) for g in quant.GROUPS)

  def __post_init__(self):
    for name in ("weight_bits", "act_bits", "a_bar_bits"):
      _widths(f"quant.{name}", (getattr(self, name),))
    _one_of("quant.mode", self.mode, (m.value for m in quant.ScaleMode))
    _one_of("quant.a_bar_param", self.a_bar_param, ("polar", "cartesian"))
    _one_of("quant.scheme", self.scheme, quant.SCHEMES)
    if self.scheme == "qs4d" and self.mode != "tensor":
      _fail("quant.mode of scheme 'qs4d'", "'tensor' (its scales are per-tensor absmax)", self.mode)
    groups = dict(self.group_bits)
    for group, bits in groups.items():
      _one_of("group quant.group_bits", group, quant.GROUPS)
      _widths(f"quant.group_bits.{group}", (bits,), unset_allowed=True)
      if bits and group not in quant.SCHEME_GROUPS[self.scheme]:
        raise errors.ConfigError(
          f"quant.group_bits.{group} is set, but scheme {self.scheme!r} does not quantize "
          f"{group}; it quantizes {quant.SCHEME_GROUPS[self.scheme]}."
        )
    object.__setattr__(self, "group_bits", tuple((g, groups.get(g, 0)) for g in quant.GROUPS))

  @functools.cached_property
  def spec(self) -> quant.QuantSpec | None:
    """The QuantSpec: uniform widths, then every set group width; None when disabled."""
    if not self.enabled:
      return None
    mode = quant.ScaleMode(self.mode)
    if self.scheme == "qs4d":
      spec = quant.QuantSpec.qs4d(self.weight_bits, self.act_bits, self.a_bar_bits)
    else:
      spec = quant.QuantSpec.uniform(
        self.weight_bits, self.act_bits, self.a_bar_bits, mode, a_bar_param=self.a_bar_param
      )
    groups = {g: quant.TensorQuant.make(b, getattr(spec, g).mode) for g, b in self.group_bits if b}
    return dataclasses.replace(spec, **groups)


@dataclasses.dataclass(frozen=True)
class HardwareConfig:
  """`config.hardware`: the simulated analog substrate of noise-aware training
  (`train`), of --mode=evaluate on simulated chips and, with `DeployConfig`'s converters,
  of the step-mode chip."""

  enabled: bool = False
  device: str = "pcm_like"
  device_csv: str = ""
  mapping: str = "column"
  recurrence: str = "digital"
  prog_noise_scale: float = 1.0
  read_noise_scale: float = 1.0
  read_noise_draw: str = "product"
  drift: bool = True
  drift_compensation: bool = True
  t_inference: float = 3600.0
  stuck_min: float = 0.0
  stuck_max: float = 0.0
  levels: int = 0
  dac_bits: int = 0
  adc_bits: int = 0
  adc_bound: float = 12.0
  output_noise: float = 0.0
  a_noise: float = 0.0
  a_noise_on: str = "a"
  g_max_fraction: float = 1.0
  train: bool = False
  ramp_epochs: float = 0.0
  eval_seeds: int = 20
  eval_seed: int = 0
  seeds_per_call: int = 20
  prog_noise_scales: tuple[float, ...] = ()

  def __post_init__(self):
    if not self.device_csv:
      devices.get_device(self.device)  # ConfigError naming the valid presets.
    if self.train and not self.enabled:
      raise errors.ConfigError("hardware.train (noise-aware training) needs hardware.enabled.")
    _ints(self, "hardware.", 1, "eval_seeds", "seeds_per_call")
    _ints(self, "hardware.", 0, "eval_seed")
    _non_negative(self, "hardware.", "ramp_epochs", "prog_noise_scales")
    for name in ("dac_bits", "adc_bits"):
      _widths(f"hardware.{name}", (getattr(self, name),), unset_allowed=True)
    # Every other number is the analog spec's to check, once, whatever the device.
    _prefixed("hardware", lambda: self.spec_on(devices.IDEAL))

  def spec_on(self, device: devices.Device, dac_bits=None, adc_bits=None) -> analog.AnalogSpec:
    """The AnalogSpec of these settings on `device` (converters overridable: the chip's)."""
    dac = self.dac_bits if dac_bits is None else dac_bits
    adc = self.adc_bits if adc_bits is None else adc_bits
    return analog.AnalogSpec.make(
      device,
      prog_noise_scale=self.prog_noise_scale,
      read_noise_scale=self.read_noise_scale,
      t_inference=self.t_inference,
      drift=self.drift,
      drift_compensation=self.drift_compensation,
      stuck_min=self.stuck_min,
      stuck_max=self.stuck_max,
      levels=self.levels or None,
      dac_bits=dac or None,
      adc_bits=adc or None,
      adc_bound=self.adc_bound,
      output_noise=self.output_noise,
      mapping=self.mapping,
      recurrence=self.recurrence,
      read_noise_draw=self.read_noise_draw,
      a_noise=self.a_noise,
      a_noise_on=self.a_noise_on,
      g_max_fraction=self.g_max_fraction,
    )

  @functools.cached_property
  def spec(self) -> analog.AnalogSpec | None:
    """The AnalogSpec on `device` (or the measured table); None when disabled."""
    if not self.enabled:
      return None
    return self.spec_on(devices.get_device(self.device, self.device_csv))


@dataclasses.dataclass(frozen=True)
class DeployConfig:
  """`config.deploy`: the step-mode chip of --mode=deploy."""

  devices: tuple[str, ...] = ("pcm_like", "rram_taox")
  dac_bits: int = 8
  adc_bits: int = 8
  periphery_bits: int = 16
  headroom: float = 1.0
  read_rng: str = "hash"
  tile_rows: int = 64
  tile_cols: int = 64
  differential: bool = True
  mapping: str = "diagonal"
  share_tiles: bool = False
  seeds: int = 20
  seeds_per_call: int = 5
  folder: str = "deploy"
  drift_times: tuple[float, ...] = ()
  recurrence_gain: str = "off"
  gain_reads: int = 0
  gain_time_s: float = -1.0
  energy: energy.EnergyConstants = energy.EnergyConstants()

  def __post_init__(self):
    _ints(self, "deploy.", 1, "seeds", "seeds_per_call", "tile_rows", "tile_cols")
    _ints(self, "deploy.", 0, "gain_reads")
    _one_of("deploy.recurrence_gain", self.recurrence_gain, chip.RECURRENCE_GAINS)
    if self.differential and self.tile_cols % 2:
      _fail(
        "deploy.tile_cols", "an even number with deploy.differential (G+/G- pairs)", self.tile_cols
      )
    for name in ("dac_bits", "adc_bits", "periphery_bits"):
      _widths(f"deploy.{name}", (getattr(self, name),))
    _one_of("deploy.mapping", self.mapping, crossbar.MAPPINGS)
    if self.share_tiles and self.mapping != "diagonal":
      _fail("deploy.share_tiles", "False with deploy.mapping='packed'", self.share_tiles)
    for name in filter(None, self.devices):
      _one_of("device in deploy.devices", name, devices.DEVICES)
    if not self.folder or os.sep in self.folder or self.folder in (".", ".."):
      _fail("deploy.folder", "a plain folder name", self.folder)
    _non_negative(self, "deploy.", "drift_times")
    _prefixed("deploy", lambda: self.chip)  # Tile, periphery, headroom and read_rng.

  @functools.cached_property
  def chip(self) -> chip.ChipConfig:
    tile = crossbar.TileConfig(self.tile_rows, self.tile_cols, self.differential)
    return chip.ChipConfig(
      tile,
      self.periphery_bits,
      self.headroom,
      self.read_rng,
      self.mapping,
      self.recurrence_gain,
      self.gain_reads,
      self.gain_time_s,
    )


STRATEGIES = ("vmap", "map", "separate")
AUTO = "auto"
BIT_AXES = ("weight_bits", "act_bits", "a_bar_bits")  # Sweep axes named as config.quant's.
STRUCTURE_AXES = ("d_model", "d_state", "n_layers")  # Axes that change shapes.


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """`config.sweep` (documented in configs/sweep_bits.py): the grid of a population sweep.
  An empty axis is not swept; `group_bits` holds (group, widths) for every group."""

  weight_bits: tuple[int, ...] = ()
  act_bits: tuple[int, ...] = ()
  a_bar_bits: tuple[int, ...] = ()
  group_bits: tuple[tuple[str, tuple[int, ...]], ...] = ()
  noise_scales: tuple[float, ...] = ()
  learning_rates: tuple[float, ...] = ()
  seeds: tuple[int, ...] = ()
  d_model: tuple[int, ...] = ()
  d_state: tuple[int, ...] = ()
  n_layers: tuple[int, ...] = ()
  strategy: str = AUTO
  chunk_size: int = 0
  shard: bool = True
  plots: bool = True
  checkpoint_every_steps: int = 0

  def __post_init__(self):
    groups = dict(self.group_bits)
    for group in groups:
      _one_of("group sweep.group_bits", group, quant.GROUPS)
    object.__setattr__(
      self, "group_bits", tuple((g, tuple(groups.get(g, ()))) for g in quant.GROUPS)
    )
    axes = {a: getattr(self, a) for a in (*BIT_AXES, "seeds", *STRUCTURE_AXES)}
    axes.update({f"group_bits.{g}": v for g, v in self.swept_groups})
    for name, values in {
      **axes,
      "noise_scales": self.noise_scales,
      "learning_rates": self.learning_rates,
    }.items():
      whole = name in axes
      if not isinstance(values, tuple):
        _fail(f"sweep.{name}", "a tuple of values", values)
      for v in values:
        if not (_is_int(v) if whole else _is_number(v)):
          kind = "whole number" if whole else "number (finite)"
          raise errors.ConfigError(f"sweep.{name}: {v!r} is not a {kind}.")
      if len(set(values)) != len(values):
        _fail(f"sweep.{name}", "a tuple without repeats", values)
      if name in BIT_AXES or name.startswith("group_bits"):
        _widths(f"sweep.{name}", values)
      low = 0 if name in ("seeds", "noise_scales") else 1e-300
      if not all(v >= low for v in values):
        _fail(f"sweep.{name}", ">= 0" if low == 0 else "positive", values)
    _one_of("sweep.strategy", self.strategy, STRATEGIES + (AUTO,))
    _ints(self, "sweep.", 0, "chunk_size", "checkpoint_every_steps")

  @property
  def swept_groups(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(group, widths) of the tensor groups that have an axis."""
    return tuple((g, v) for g, v in self.group_bits if v)

  @property
  def swept_bits(self) -> bool:
    return any(getattr(self, name) for name in BIT_AXES) or bool(self.swept_groups)


# ---------------------------------------------------------------------------------------
# The experiment.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A whole experiment (the fields of configs/default.py, each documented there)."""

  seed: int = 0
  model_name: str = "s4d"
  batch_size: int = 64
  eval_batch_size: int = 256
  num_epochs: int = 60
  log_every_steps: int = 20
  checkpoint_every_epochs: int = 1
  keep_checkpoints: int = 2
  init_checkpoint: str = ""
  progress_bar: bool = True
  log_tensorboard: bool = False
  data: data.DataConfig = data.DataConfig()
  model: models.ModelConfig = models.ModelConfig()
  optimizer: optim.OptimConfig = optim.OptimConfig()
  quant: QuantConfig = QuantConfig()
  hardware: HardwareConfig = HardwareConfig()
  prune: pruning.PruneConfig = pruning.PruneConfig()
  deploy: DeployConfig = DeployConfig()
  sweep: SweepConfig | None = None
  claim: dict | None = None

  def __post_init__(self):
    _ints(self, "", 0, "seed")
    _ints(self, "", 1, "batch_size", "eval_batch_size", "num_epochs", "log_every_steps")
    _ints(self, "", 1, "checkpoint_every_epochs", "keep_checkpoints")
    _one_of("model_name", self.model_name, sorted(models.MODELS))
    if self.sweep is not None:
      if self.sweep.swept_bits and not self.quant.enabled:
        raise errors.ConfigError("Sweeping bit widths needs quant.enabled=True.")
      if self.sweep.noise_scales and not self.hardware.enabled:
        raise errors.ConfigError("sweep.noise_scales needs hardware.enabled=True.")
      if self.prune.enabled:
        raise errors.ConfigError("A sweep cannot prune: set prune.enabled=False.")

  def chip_specs(self) -> dict[str, analog.AnalogSpec]:
    """{device name: AnalogSpec} of every device of `deploy.devices` ("" = hardware.device):
    the device model of `hardware` with the chip's converters of `deploy`."""
    d, hw = self.deploy, self.hardware
    if hw.a_noise > 0:
      raise errors.ConfigError(
        f"hardware.a_noise={hw.a_noise} (relative weight noise) is not modelled by the "
        "step-mode chip, whose device models carry the noise: set hardware.a_noise=0 for "
        "--mode=deploy, or evaluate it with --mode=evaluate and hardware.enabled=True."
      )
    for name in ("dac_bits", "adc_bits"):
      mine, chips = getattr(hw, name), getattr(d, name)
      if mine and mine != chips:
        raise errors.ConfigError(
          f"hardware.{name}={mine} but deploy.{name}={chips}: the chip uses deploy.*; "
          f"set them equal or leave hardware.{name} at 0."
        )
    if d.recurrence_gain != "off" and hw.recurrence == "digital":
      raise errors.ConfigError(
        f"deploy.recurrence_gain={d.recurrence_gain!r} trims a recurrence held on the arrays: "
        "set hardware.recurrence=residual or direct, or deploy.recurrence_gain=off."
      )
    names = [n for n in d.devices if n] or [hw.device]
    chip_devices = [devices.get_device(name, hw.device_csv) for name in names]
    frozen_at = devices.fixed_time(chip_devices[0])
    if d.drift_times and frozen_at is not None:
      raise errors.ConfigError(
        f"deploy.drift_times evaluates the first device, {chip_devices[0].name!r}, at other "
        f"times, but its statistics are frozen at {frozen_at:g} s: put a device that drifts "
        "first in deploy.devices, or leave drift_times empty."
      )
    return {dev.name: hw.spec_on(dev, d.dac_bits, d.adc_bits) for dev in chip_devices}


# Nested sections: (class, field) -> the dataclass that field holds.
_SECTIONS = {
  "data": data.DataConfig,
  "model": models.ModelConfig,
  "optimizer": optim.OptimConfig,
  "quant": QuantConfig,
  "hardware": HardwareConfig,
  "prune": pruning.PruneConfig,
  "deploy": DeployConfig,
  "sweep": SweepConfig,
  "energy": energy.EnergyConstants,
}
_PAIRS = ("group_bits",)  # Dicts held as (key, value) pairs, in a fixed order.


def _plain(value):
  """Lists (from JSON) and tuples as tuples, ConfigDicts and dicts as dicts, recursively."""
  if isinstance(value, Mapping) or hasattr(value, "to_dict"):
    items = value.to_dict().items() if hasattr(value, "to_dict") else value.items()
    return {k: _plain(v) for k, v in items}
  if isinstance(value, list | tuple):
    return tuple(_plain(v) for v in value)
  return value


def _unknown(key: str, where: str, valid) -> errors.ConfigError:
  close = difflib.get_close_matches(key, list(valid), n=1)
  hint = f"; did you mean '{where}{close[0]}'?" if close else f"; valid: {sorted(valid)}"
  return errors.ConfigError(f"Unknown config key '{where}{key}'{hint}")


# The kinds of leaf fields: (test, what the value must be).
_KINDS = {
  bool: (lambda v: isinstance(v, bool), "True or False"),
  int: (_is_int, "a whole number"),
  float: (_is_number, "a finite number"),
  str: (lambda v: isinstance(v, str), "a string"),
}


def _kind_problem(value, hint) -> str | None:
  """What a value of the wrong kind for type `hint` should have been, or None if it fits:
  bools are True/False, ints whole numbers (not bools), floats finite numbers, strings
  strings, tuple[X, ...] tuples of X; `X | None` also takes None."""
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if origin in (typing.Union, types.UnionType):
    if value is None and type(None) in args:
      return None
    (hint,) = [a for a in args if a is not type(None)]
    return _kind_problem(value, hint)
  if origin is tuple:
    if not isinstance(value, tuple):
      return "a tuple (a list on the command line)"
    if len(args) == 2 and args[1] is Ellipsis:
      for v in value:
        inner = _kind_problem(v, args[0])
        if inner:
          return f"a tuple of which each item is {inner}"
    return None
  if hint in _KINDS:
    fits, expected = _KINDS[hint]
    return None if fits(value) else expected
  return None  # Sections and free-form values (claim) are checked where they are built.


def _check_kinds(cls, kwargs: dict, where: str) -> None:
  """Every leaf field of `kwargs` holds a value of its annotated kind: the one place where
  the type of each config field is checked (the sections check the ranges)."""
  hints = typing.get_type_hints(cls)
  for key, value in kwargs.items():
    if key in _SECTIONS or key in _PAIRS:
      continue
    expected = _kind_problem(value, hints[key])
    if expected:
      _fail(f"{where}{key}", expected, value)


def _build(cls, values, where: str = ""):
  if not isinstance(values, Mapping):
    raise errors.ConfigError(
      f"config section {where.rstrip('.') or 'config'} must be a section, got {values!r}."
    )
  names = {f.name for f in dataclasses.fields(cls)}
  kwargs = {}
  for key, value in values.items():
    if key not in names:
      raise _unknown(key, where, names)
    if key in _SECTIONS:
      value = _build(_SECTIONS[key], value, f"{where}{key}.")
    elif key in _PAIRS:
      if not isinstance(value, Mapping):
        raise errors.ConfigError(f"{where}{key} must be a section of group -> bits, got {value!r}.")
      value = tuple((str(g), _plain(v)) for g, v in value.items())
    else:
      value = _plain(value)
    kwargs[key] = value
  _check_kinds(cls, kwargs, where)
  try:
    return cls(**kwargs)
  except TypeError as e:  # A value of the wrong kind, e.g. a section where a number goes.
    raise errors.ConfigError(f"config section {where.rstrip('.') or '(top)'}: {e}") from e


def from_config(config) -> Experiment:
  """The Experiment of a ConfigDict or nested dict (ConfigError on an unknown key or a bad
  value, naming it)."""
  return _build(Experiment, _plain(config))


def to_dict(exp: Experiment) -> dict:
  """The nested dict of `exp` (a run's config.json); sections it lacks are left out."""
  out = {}
  for f in dataclasses.fields(exp):
    value = getattr(exp, f.name)
    if value is None and f.name in ("sweep", "claim"):
      continue
    out[f.name] = _section_dict(value) if dataclasses.is_dataclass(value) else value
  return out


def _section_dict(section) -> dict:
  out = {}
  for f in dataclasses.fields(section):
    value = getattr(section, f.name)
    if dataclasses.is_dataclass(value):
      value = _section_dict(value)
    elif f.name in _PAIRS:
      value = dict(value)
    out[f.name] = value
  return out


def find_key(tree: Mapping, path: str) -> tuple[Mapping, str]:
  """(the section of the nested `tree` that holds the dotted `path`, its last key); a
  ConfigError naming the closest valid key where a part of the path is unknown."""
  *parents, leaf = path.split(".")
  target, where = tree, ""
  for p in parents:
    if p in target and not isinstance(target[p], Mapping):
      raise errors.ConfigError(
        f"Unknown config key '{path}': '{where}{p}' is a value, not a section."
      )
    if p not in target:
      raise _unknown(p, where, [k for k, v in target.items() if isinstance(v, Mapping)])
    target, where = target[p], f"{where}{p}."
  if leaf not in target:
    raise _unknown(leaf, where, target)
  return target, leaf


def override(exp: Experiment, overrides: Mapping) -> Experiment:
  """A copy of `exp` with {dotted path: value} set (ConfigError for an unknown path)."""
  tree = to_dict(exp)
  for path, value in overrides.items():
    target, leaf = find_key(tree, path)
    target[leaf] = value
  return from_config(tree)
