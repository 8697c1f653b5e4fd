"""Memristive device presets: conductance range, levels and the statistics of each noise term.

A device is a frozen (hashable) dataclass, so it can sit in the static part of a pytree spec
(`ssm_aimc.hardware.analog.AnalogSpec`) and select code paths at trace time. Conductances
are in microsiemens (uS), times in seconds (s). Every device answers the same questions:

  programmed_mean_us(g)       mean conductance after programming target g (identity except
                              for measured devices, whose write is biased),
  prog_noise_std_us(g)        std of the programming error at target g,
  drift_nu(g)                 (mean, std) of the drift exponent nu of G(t) = G (t/t0)^-nu,
  read_noise_std_us(g, g_t, t) std of one read at time t of a device programmed at g whose
                              conductance has drifted to g_t,

and says statically which terms it has (`has_prog_noise`, `has_drift`, `has_read_noise`),
so the ideal device adds no operation at all.

Presets (docs/design.md §2):
  PCM_LIKE   the PCM statistics of aihwkit's PCMLikeNoiseModel, fitted to measured
             phase-change memory by Joshi et al. (Nat. Commun. 2020).
  RRAM_TAOX  TaOx RRAM-like: an assumption in the ballpark of the write-verify chips of
             Rao et al. (Nature 2023), to be replaced by measured data.
  IDEAL      no noise, no drift, continuous conductance.
`MeasuredDevice.from_csv` turns a lab's table (target, measured mean, measured std) into a
device that interpolates between the rows.

Pure jax/numpy; no flax.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os

import jax.numpy as jnp
import numpy as np

from ssm_aimc import errors

# |g_hat| below this is treated as this inside logs and negative powers (an unprogrammed
# device); aihwkit uses the same kind of floor.
G_HAT_FLOOR = 1e-6


def _check_range(name: str, g_min_us: float, g_max_us: float) -> None:
  if not (math.isfinite(g_min_us) and math.isfinite(g_max_us)):
    raise errors.ConfigError(f"Device {name!r}: g_min and g_max must be finite.")
  if g_min_us < 0:
    raise errors.ConfigError(f"Device {name!r}: g_min must be >= 0 uS, got {g_min_us}.")
  if g_min_us >= g_max_us:
    raise errors.ConfigError(
      f"Device {name!r}: g_min ({g_min_us} uS) must be below g_max ({g_max_us} uS)."
    )


def _check_levels(name: str, levels: int | None) -> None:
  if levels is not None and (int(levels) != levels or levels < 2):
    raise errors.ConfigError(f"Device {name!r}: levels must be None or an integer >= 2.")


@dataclasses.dataclass(frozen=True)
class PCMLikeDevice:
  """Phase-change memory statistics of aihwkit's PCMLikeNoiseModel (Joshi et al. 2020).

  With g_hat = G / g_max:
    programming std (uS) = p0 + p1 g_hat + p2 g_hat^2,
    drift nu ~ N(clip(-0.0155 ln g_hat + 0.0244, 0.049, 0.1),
                 clip(-0.0125 ln g_hat - 0.0059, 0.008, 0.045)), clipped at 0,
    read std = G(t) Q_s sqrt(ln((t + t_read) / (2 t_read))), Q_s = min(0.0088 g_hat^-0.65, 0.2)
    (the log term is clipped at 0, so no read noise before t_read).

  Attributes:
    name: registry name.
    g_min_us, g_max_us: conductance range (uS); g_max is where the largest |w| maps.
    levels: distinguishable conductance levels (None: continuous).
    prog_poly: (p0, p1, p2) of the programming-noise polynomial, uS.
    t0_s: drift reference time t0 (s) — programming is read back at t0.
    t_read_s: integration time of one read (s).
  """

  name: str = "pcm_like"
  g_min_us: float = 0.0
  g_max_us: float = 25.0
  levels: int | None = None
  prog_poly: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)
  t0_s: float = 20.0
  t_read_s: float = 250e-9

  has_prog_noise = True
  has_drift = True
  has_read_noise = True

  def __post_init__(self):
    _check_range(self.name, self.g_min_us, self.g_max_us)
    _check_levels(self.name, self.levels)

  def _g_hat(self, g):
    return jnp.clip(jnp.abs(g) / self.g_max_us, G_HAT_FLOOR, None)

  def programmed_mean_us(self, g):
    return g

  def prog_noise_std_us(self, g):
    g_hat = jnp.abs(g) / self.g_max_us
    p0, p1, p2 = self.prog_poly
    return jnp.maximum(p0 + p1 * g_hat + p2 * g_hat**2, 0.0)

  def drift_nu(self, g):
    log_g = jnp.log(self._g_hat(g))
    mean = jnp.clip(-0.0155 * log_g + 0.0244, 0.049, 0.1)
    std = jnp.clip(-0.0125 * log_g - 0.0059, 0.008, 0.045)
    return mean, std

  def read_noise_std_us(self, g, g_t, t):
    q_s = jnp.minimum(0.0088 / self._g_hat(g) ** 0.65, 0.2)
    growth = jnp.log((t + self.t_read_s) / (2.0 * self.t_read_s))
    return jnp.abs(g_t) * q_s * jnp.sqrt(jnp.maximum(growth, 0.0))


class _FractionalReadAndDrift:
  """Read noise as a fixed fraction of G and one drift law for every device: the part of a
  device that `ConstantNoiseDevice` and `MeasuredDevice` share (their dataclass fields
  read_noise_of_g, drift_nu_mean, drift_nu_std)."""

  @property
  def has_drift(self) -> bool:
    return self.drift_nu_mean > 0 or self.drift_nu_std > 0

  @property
  def has_read_noise(self) -> bool:
    return self.read_noise_of_g > 0

  def drift_nu(self, g):
    return jnp.full_like(g, self.drift_nu_mean), jnp.full_like(g, self.drift_nu_std)

  def read_noise_std_us(self, g, g_t, t):
    del g, t
    return self.read_noise_of_g * jnp.abs(g_t)


@dataclasses.dataclass(frozen=True)
class ConstantNoiseDevice(_FractionalReadAndDrift):
  """A device with fixed relative noise: programming std a fraction of g_max, read std a
  fraction of G per read, optional drift with one exponent for all devices.

  Attributes:
    name: registry name.
    g_min_us, g_max_us: conductance range (uS).
    levels: distinguishable conductance levels (None: continuous).
    prog_noise_of_gmax: programming std / g_max.
    read_noise_of_g: read std / G, per read.
    drift_nu_mean, drift_nu_std: drift exponent statistics (0: no drift).
    t0_s: drift reference time (s).
  """

  name: str
  g_min_us: float
  g_max_us: float
  levels: int | None = None
  prog_noise_of_gmax: float = 0.0
  read_noise_of_g: float = 0.0
  drift_nu_mean: float = 0.0
  drift_nu_std: float = 0.0
  t0_s: float = 20.0

  def __post_init__(self):
    _check_range(self.name, self.g_min_us, self.g_max_us)
    _check_levels(self.name, self.levels)
    for field in ("prog_noise_of_gmax", "read_noise_of_g", "drift_nu_mean", "drift_nu_std"):
      if getattr(self, field) < 0:
        raise errors.ConfigError(f"Device {self.name!r}: {field} must be >= 0.")

  @property
  def has_prog_noise(self) -> bool:
    return self.prog_noise_of_gmax > 0

  def programmed_mean_us(self, g):
    return g

  def prog_noise_std_us(self, g):
    return jnp.full_like(g, self.prog_noise_of_gmax * self.g_max_us)


def _table_problem(rows: np.ndarray, g_max_us: float) -> str:
  """What makes a measured table (rows of target_us, mean_us, std_us) physically
  impossible, naming the first such row (counted from 1, the header not counted), or ''.
  The targets are checked first: g_max defaults to the last one."""

  def why_target(i):
    target, _, std = rows[i]
    if not np.all(np.isfinite(rows[i])):
      return "a non-finite entry"
    if target < 0 or std < 0:
      return "a negative target or std (targets and stds must be >= 0)"
    if i and target <= rows[i - 1, 0]:
      return (
        f"a target not above the previous row's ({rows[i - 1, 0]:g} uS): targets must be "
        "strictly increasing (sorted, no duplicates)"
      )
    return ""

  def why_mean(i):
    mean = rows[i, 1]
    if mean <= 0:
      return "a mean conductance <= 0 uS (a device conducts: it must be > 0)"
    if mean > g_max_us:
      return f"a mean conductance above the device's g_max ({g_max_us:g} uS)"
    return ""

  for why in (why_target, why_mean):
    for i, (target, mean, std) in enumerate(rows):
      found = why(i)
      if found:
        return f"row {i + 1} (target_us={target:g}, mean_us={mean:g}, std_us={std:g}) has {found}."
  return ""


@dataclasses.dataclass(frozen=True)
class MeasuredDevice(_FractionalReadAndDrift):
  """A device described by a measured table: target -> (programmed mean, programmed std).

  Between rows the mean and std are interpolated linearly; outside the table they are held
  at the end rows' values (relative to the target for the mean). Read noise and drift are
  not in such a table; give them as constant fractions if the lab measured them.

  Attributes:
    name: a label for reports.
    table: ((target_us, mean_us, std_us), ...) sorted by target, at least two rows; a
      physically impossible row (a mean <= 0 or above g_max, a target that is not above
      the previous one, a negative target or std) is a ConfigError naming it.
    g_min_us, g_max_us: conductance range (default: the table's target range).
    levels: distinguishable conductance levels (None: continuous).
    read_noise_of_g: read std / G, per read.
    drift_nu_mean, drift_nu_std, t0_s: drift, as in ConstantNoiseDevice.
  """

  name: str
  table: tuple[tuple[float, float, float], ...]
  g_min_us: float | None = None
  g_max_us: float | None = None
  levels: int | None = None
  read_noise_of_g: float = 0.0
  drift_nu_mean: float = 0.0
  drift_nu_std: float = 0.0
  t0_s: float = 20.0

  has_prog_noise = True

  def __post_init__(self):
    rows = np.asarray(self.table, np.float64)
    if rows.ndim != 2 or rows.shape[1] != 3 or len(rows) < 2:
      raise errors.ConfigError(
        f"Device {self.name!r}: the table needs at least two rows of (target_us, mean_us, std_us)."
      )
    if self.g_min_us is None:
      object.__setattr__(self, "g_min_us", float(rows[0, 0]))
    if self.g_max_us is None:
      object.__setattr__(self, "g_max_us", float(rows[-1, 0]))
    problem = _table_problem(rows, self.g_max_us)
    if problem:
      raise errors.ConfigError(f"Device {self.name!r}: {problem}")
    _check_range(self.name, self.g_min_us, self.g_max_us)
    _check_levels(self.name, self.levels)

  @classmethod
  def from_csv(cls, path: str, **fields) -> MeasuredDevice:
    """Reads a CSV with columns target_us, mean_us, std_us (a header row is required).

    Raises DataError when the file is missing, ConfigError when it is malformed.
    """
    if not os.path.exists(path):
      raise errors.DataError(f"Device table {path} not found.")
    with open(path, newline="") as f:
      reader = csv.DictReader(f)
      want = ("target_us", "mean_us", "std_us")
      if reader.fieldnames is None or any(k not in reader.fieldnames for k in want):
        raise errors.ConfigError(
          f"{path}: expected a header with columns {want}, got {reader.fieldnames}."
        )
      try:
        rows = tuple(tuple(float(r[k]) for k in want) for r in reader)
      except (TypeError, ValueError) as e:
        raise errors.ConfigError(f"{path}: not a number in the table ({e}).") from None
    fields.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    try:
      return cls(table=rows, **fields)
    except errors.ConfigError as e:  # Name the file, not only the device.
      raise errors.ConfigError(f"Device table {path}: {e}") from None

  def _column(self, i: int):
    rows = np.asarray(self.table, np.float32)
    return jnp.asarray(rows[:, 0]), jnp.asarray(rows[:, i])

  def programmed_mean_us(self, g):
    targets, means = self._column(1)
    # Interpolate the write error (mean - target) so that the mean stays ~ g outside.
    return g + jnp.interp(g, targets, means - targets)

  def prog_noise_std_us(self, g):
    targets, stds = self._column(2)
    return jnp.interp(g, targets, stds)


Device = PCMLikeDevice | ConstantNoiseDevice | MeasuredDevice

PCM_LIKE = PCMLikeDevice()
# Assumption values (docs/design.md §2), not a measured chip: 1-100 uS, 2048 levels after
# write-verify, programming std 1 % of g_max, read std 0.5 % of G, no drift.
RRAM_TAOX = ConstantNoiseDevice(
  name="rram_taox",
  g_min_us=1.0,
  g_max_us=100.0,
  levels=2048,
  prog_noise_of_gmax=0.01,
  read_noise_of_g=0.005,
)
IDEAL = ConstantNoiseDevice(name="ideal", g_min_us=0.0, g_max_us=25.0)

DEVICES: dict[str, Device] = {d.name: d for d in (PCM_LIKE, RRAM_TAOX, IDEAL)}


def get_device(name: str, csv_path: str = "") -> Device:
  """A preset by name, or a MeasuredDevice from `csv_path` when one is given."""
  if csv_path:
    return MeasuredDevice.from_csv(csv_path)
  if name not in DEVICES:
    raise errors.ConfigError(f"Unknown device {name!r}; valid devices: {sorted(DEVICES)}.")
  return DEVICES[name]


def describe(device: Device) -> dict:
  """JSON-ready summary of a device for results files."""
  out = {"name": device.name, "g_min_us": device.g_min_us, "g_max_us": device.g_max_us}
  out["levels"] = device.levels
  out.update(
    prog_noise=bool(device.has_prog_noise),
    drift=bool(device.has_drift),
    read_noise=bool(device.has_read_noise),
  )
  return out
