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

Presets (docs/design.md §2), by registry name; those that copy the statistics of one of
IBM aihwkit's inference noise models (Apache-2.0) name it in `AIHWKIT_NOISE_MODELS`:
  pcm_like         PCM_LIKE: aihwkit's PCMLikeNoiseModel, fitted to measured phase-change
                   memory by Joshi et al. (Nat. Commun. 2020).
  reram_wan2022    RERAM_WAN2022 (and _1d, _2d): aihwkit's ReRamWan2022NoiseModel, the
                   ReRAM of Wan et al. (Nature 2022) 1 s (1 day, 2 days) after programming.
  reram_cmo        RERAM_CMO: aihwkit's ReRamCMONoiseModel, CMO/HfOx ReRAM of IBM Research
                   Zurich (Falcone et al.), one hour after programming.
  rram_taox        RRAM_TAOX: TaOx RRAM-like, an assumption in the ballpark of the
                   write-verify chips of Rao et al. (Nature 2023), to be replaced by data.
  ideal            IDEAL: no noise, no drift, continuous conductance.
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
  """Phase-change memory statistics of aihwkit's PCMLikeNoiseModel (Joshi et al. 2020);
  registry name "pcm_like". Constants: aihwkit src/aihwkit/inference/noise/pcm.py
  (PCMLikeNoiseModel defaults: prog_coeff, g_max = 25 uS, t_read = 250 ns, t_0 = 20 s, the
  drift and read-noise fits); our own code reproduces their statistics.

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


# aihwkit's ReRamWan2022NoiseModel (src/aihwkit/inference/noise/reram.py, commit 4545f11b of
# github.com/IBM/aihwkit): the std (uS) of G - G_target at three times after programming,
# a 4th-order polynomial in g_hat = G_target / g_max fitted to the figures of Wan et al.,
# Nature 2022. Listed here as (c0, c1, c2, c3, c4) of c0 + c1 g_hat + ... + c4 g_hat^4
# (aihwkit writes each list from c4 down and reverses it).
WAN2022_STD_POLY = {
  1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
  86400.0: (0.701, 22.086, -50.773, 47.095, -16.458),
  172800.0: (0.782, 20.274, -43.507, 37.062, -11.934),
}


@dataclasses.dataclass(frozen=True)
class ReRamWan2022Device:
  """ReRAM statistics of aihwkit's ReRamWan2022NoiseModel (Wan et al., Nature 2022).

  At time t after programming (one of aihwkit's three fitted times: 1 s, 1 day, 2 days),
  a device programmed to target G sits at G + sigma_t(g_hat) eps, eps ~ N(0, 1), clipped
  at 0, with sigma_t the polynomial `WAN2022_STD_POLY[t]` (uS) in g_hat = G / g_max. As in
  aihwkit, the draw at t replaces the one at programming (no drift law, no separate read
  noise: the fit is of the whole deviation) and sigma does not rescale with g_max (aihwkit
  multiplies by g_max / coeff_g_max_reference, which it sets to g_max itself).

  In this Device interface that is a programming noise of std |sigma_t| and nothing else.
  What differs from aihwkit:
    - the time is this preset's `t_inference_s`, fixed when the device is made: a spec
      of another t_inference is refused (`AnalogSpec.make`, as aihwkit raises for any
      other time; pick reram_wan2022 / _1d / _2d or replace t_inference_s);
    - a weight is the differential pair of `analog.program` with G- at g_min (aihwkit's
      SinglePairConductanceConverter, also g_min = 0 by default: the same mapping);
    - aihwkit suggests ~1 % additive read noise on top (its forward.w_noise); none here.

  Attributes:
    name: registry name.
    g_min_us, g_max_us: conductance range (uS); aihwkit's default g_max is 25 uS.
    levels: distinguishable conductance levels (None: continuous).
    t_inference_s: which fitted time the statistics are those of (a key of
      WAN2022_STD_POLY).
  """

  name: str = "reram_wan2022"
  g_min_us: float = 0.0
  g_max_us: float = 25.0
  levels: int | None = None
  t_inference_s: float = 1.0

  has_prog_noise = True
  has_drift = False
  has_read_noise = False

  def __post_init__(self):
    _check_range(self.name, self.g_min_us, self.g_max_us)
    _check_levels(self.name, self.levels)
    if self.t_inference_s not in WAN2022_STD_POLY:
      raise errors.ConfigError(
        f"Device {self.name!r}: t_inference_s must be one of aihwkit's fitted times "
        f"{sorted(WAN2022_STD_POLY)} s, got {self.t_inference_s}."
      )

  def programmed_mean_us(self, g):
    return g

  def prog_noise_std_us(self, g):
    g_hat = g / self.g_max_us
    std = jnp.zeros_like(g_hat)
    for c in reversed(WAN2022_STD_POLY[self.t_inference_s]):  # Horner.
      std = std * g_hat + c
    return jnp.abs(std)  # aihwkit multiplies eps by sigma: only |sigma| matters.


# aihwkit's ReRamCMONoiseModel defaults (same file and commit): conductance range of its
# SingleDeviceConductanceConverter, programming std intercept and slope (uS, uS/uS) per
# acceptance range of the program-and-verify loop (0.2 % and 2 % of the target; the default
# acceptance_range=2e-2 is not a key, so aihwkit falls back to the smallest, 0.2), the
# relaxation fit mean = a ln t, std = b ln t + c (uS, t in s), and the read noise
# K log10(G) sqrt(ln((t + t_read) / (2 t_read))) with its t_read.
CMO_G_MIN_US, CMO_G_MAX_US = 9.0, 88.199997
CMO_PROG_STD = {0.2: (0.00081107, 0.00106879), 2.0: (0.0112185391, 0.01129027418)}
CMO_RELAX_MEAN_PER_LN_T = -0.08900206
CMO_RELAX_STD = (0.04201137, 0.41183342)
CMO_READ_K, CMO_T_READ_S = 0.0277316483, 1e-6


@dataclasses.dataclass(frozen=True)
class ReRamCMODevice:
  """CMO/HfOx ReRAM statistics of aihwkit's ReRamCMONoiseModel (IBM Research Zurich,
  Falcone et al.), at `t_inference_s` after programming:

    programming   G_prog = G + (p0 + p1 G) eps1 (G in uS; p0, p1 of the acceptance range),
    relaxation    G_rel = G_prog + a ln t + (b ln t + c) eps2,
    read          G_t = G_rel + K log10(G_rel) sqrt(ln((t + t_read) / (2 t_read))) eps3,

  then clipped to [g_min, g_max]. In this Device interface: programmed mean G + a ln t, a
  programming std sqrt((p0 + p1 G)^2 + (b ln t + c)^2) (the sum of the two independent
  frozen Gaussians), no drift law, and a read-noise std K |log10 G_t| sqrt(ln((t + t_read)
  / (2 t_read))) (t = t_inference_s) drawn at every read.

  What differs from aihwkit:
    - the time is this preset's `t_inference_s`, fixed when the device is made: a spec
      of another t_inference is refused (replace t_inference_s for another time);
    - aihwkit draws the read term once at t_inference (frozen into the weights of that
      evaluation); here it is fresh at every read (as the project's PCM read noise is),
      with the same std per read;
    - aihwkit maps a weight onto ONE device (SingleDeviceConductanceConverter, w_min ->
      g_min, w_max -> g_max); here a weight is a differential pair G+ - G- with the idle
      device at g_min (`analog.program`), so the mean shift a ln t, equal on both, cancels;
    - clipping: only at 0 here (`noise.program_conductances`), not at [g_min, g_max], and
      the read std uses |log10 G| (aihwkit's sigma can go negative below 1 uS, where only
      its magnitude matters; the presets' g_min = 9 uS keeps G above 1 uS).

  Attributes:
    name: registry name.
    g_min_us, g_max_us: conductance range (uS), aihwkit's defaults 9 and 88.199997.
    levels: distinguishable conductance levels (None: continuous).
    acceptance_range_pct: 0.2 or 2, the program-and-verify tolerance (% of target).
    t_inference_s: time after programming (s) whose statistics the preset holds, > 0.
  """

  name: str = "reram_cmo"
  g_min_us: float = CMO_G_MIN_US
  g_max_us: float = CMO_G_MAX_US
  levels: int | None = None
  acceptance_range_pct: float = 0.2
  t_inference_s: float = 3600.0

  has_prog_noise = True
  has_drift = False
  has_read_noise = True

  def __post_init__(self):
    _check_range(self.name, self.g_min_us, self.g_max_us)
    _check_levels(self.name, self.levels)
    if self.acceptance_range_pct not in CMO_PROG_STD:
      raise errors.ConfigError(
        f"Device {self.name!r}: acceptance_range_pct must be one of {sorted(CMO_PROG_STD)}."
      )
    if not (math.isfinite(self.t_inference_s) and self.t_inference_s > 0):
      raise errors.ConfigError(f"Device {self.name!r}: t_inference_s must be > 0 seconds.")

  def _relaxation(self) -> tuple[float, float]:
    """(mean shift, std) of the relaxation at t_inference_s, uS."""
    log_t = math.log(self.t_inference_s)
    b, c = CMO_RELAX_STD
    return CMO_RELAX_MEAN_PER_LN_T * log_t, b * log_t + c

  def programmed_mean_us(self, g):
    return g + self._relaxation()[0]

  def prog_noise_std_us(self, g):
    p0, p1 = CMO_PROG_STD[self.acceptance_range_pct]
    return jnp.sqrt(jnp.square(p0 + p1 * g) + self._relaxation()[1] ** 2)

  def read_noise_std_us(self, g, g_t, t):
    del g, t  # The preset's own time (see the docstring).
    t = self.t_inference_s
    growth = math.sqrt(max(math.log((t + CMO_T_READ_S) / (2.0 * CMO_T_READ_S)), 0.0))
    log_g = jnp.log10(jnp.maximum(jnp.abs(g_t), G_HAT_FLOOR))
    return CMO_READ_K * jnp.abs(log_g) * growth


Device = PCMLikeDevice | ReRamWan2022Device | ReRamCMODevice | ConstantNoiseDevice | MeasuredDevice

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
RERAM_WAN2022 = ReRamWan2022Device()
RERAM_WAN2022_1D = ReRamWan2022Device(name="reram_wan2022_1d", t_inference_s=86400.0)
RERAM_WAN2022_2D = ReRamWan2022Device(name="reram_wan2022_2d", t_inference_s=172800.0)
RERAM_CMO = ReRamCMODevice()

DEVICES: dict[str, Device] = {
  d.name: d
  for d in (
    PCM_LIKE,
    RERAM_WAN2022,
    RERAM_WAN2022_1D,
    RERAM_WAN2022_2D,
    RERAM_CMO,
    RRAM_TAOX,
    IDEAL,
  )
}
# The aihwkit inference noise model (aihwkit.inference.noise) whose statistics each preset
# copies; the presets not listed are this project's own.
AIHWKIT_NOISE_MODELS = {
  "pcm_like": "PCMLikeNoiseModel",
  "reram_wan2022": "ReRamWan2022NoiseModel",
  "reram_wan2022_1d": "ReRamWan2022NoiseModel",
  "reram_wan2022_2d": "ReRamWan2022NoiseModel",
  "reram_cmo": "ReRamCMONoiseModel",
}


def get_device(name: str, csv_path: str = "") -> Device:
  """A preset by name, or a MeasuredDevice from `csv_path` when one is given."""
  if csv_path:
    return MeasuredDevice.from_csv(csv_path)
  if name not in DEVICES:
    raise errors.ConfigError(f"Unknown device {name!r}; valid devices: {sorted(DEVICES)}.")
  return DEVICES[name]


def fixed_time(device: Device) -> float | None:
  """The time after programming (s) that a device's statistics are frozen at (the ReRAM
  presets of aihwkit's fits), or None for a device that follows the spec's t_inference."""
  return getattr(device, "t_inference_s", None)


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
