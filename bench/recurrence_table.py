"""The README table of bench/recurrence_recipes.sh: one row per recipe that has results.

  .venv/bin/python bench/recurrence_table.py OUT

Reads OUT/<run>/<deploy folder>/results.json (written by --mode=deploy) and prints the
software accuracy of the exported model, the converters-only chip, and the chips on each
device (mean +- std over the chips, their number, and the gap to software in points), then
the accuracy over time of the drift row.
"""

from __future__ import annotations

import json
import os
import sys

# Row key of bench/recurrence_recipes.sh -> (run folder, deploy folder, what it is).
ROWS = {
  "float_digital": ("float", "deploy_digital", "(a) float, a_bar digital (reference)"),
  "float_residual": ("float", "deploy_residual", "(a) float, residual"),
  "float_direct": ("float", "deploy_direct", "(a) float, direct"),
  "qat_abar4": ("qat_abar4", "deploy_residual", "(b) QAT a_bar 4 bits (ours), residual"),
  "qs4d_a4": ("qs4d_a4", "deploy_residual", "(b) QAT A 4 bits (qs4d), residual"),
  "na_pcm": ("na_pcm", "deploy_residual", "(c) noise-aware, PCM, residual"),
  "na_rram": ("na_rram", "deploy_residual", "(c) noise-aware, RRAM, residual"),
  "small_slow": ("small_slow", "deploy_residual", "(d) N=8, step_max 0.01, residual"),
  "small_slow_trim": (
    "small_slow",
    "deploy_residual_trim",
    "(d)+(e) N=8, step_max 0.01, residual, gain trim",
  ),
  "small8": ("small8", "deploy_residual", "(d) N=8, residual"),
  "small8_trim": ("small8", "deploy_residual_trim", "(d)+(e) N=8, residual, gain trim"),
  "quarter": ("quarter", "deploy_residual", "(d) S4D-Lin at pi/4 n, residual"),
  "quarter_trim": (
    "quarter",
    "deploy_residual_trim",
    "(d)+(e) S4D-Lin at pi/4 n, residual, gain trim",
  ),
  "real": ("real", "deploy_residual", "(d) S4D-Real (decay only), residual"),
  "real_trim": (
    "real",
    "deploy_residual_trim",
    "(d)+(e) S4D-Real (decay only), residual, gain trim",
  ),
  "float_residual_trim": ("float", "deploy_residual_trim", "(e) float, residual, gain trim"),
  "float_direct_trim": ("float", "deploy_direct_trim", "(e) float, direct, gain trim"),
  "float_residual_trim16": (
    "float",
    "deploy_residual_trim16",
    "(e) float, residual, gain trim from 16 reads",
  ),
  "float_residual_trim_x20": (
    "float",
    "deploy_residual_trim_x20",
    "(e) float, residual, gain trim, 20 chips",
  ),
  "float_residual_g50": ("float", "deploy_residual_g50", "(f) float, residual, g_max margin 0.5"),
  "float_residual_trim_g80": (
    "float",
    "deploy_residual_trim_g80",
    "(e)+(f) float, residual, gain trim, g_max margin 0.8",
  ),
  "float_residual_trim_g50": (
    "float",
    "deploy_residual_trim_g50",
    "(e)+(f) float, residual, gain trim, g_max margin 0.5",
  ),
}
# Drift rows: (run folder, deploy folder, what it is).
DRIFTS = (
  ("float", "deploy_residual_trim_drift", "trim re-measured at each time"),
  ("float", "deploy_residual_trim20_drift", "trim measured once at 20 s"),
)


def _load(out: str, run: str, folder: str) -> dict | None:
  path = os.path.join(out, run, folder, "results.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _chips(r: dict, device: str, software: float) -> str:
  c = r["chips"].get(device)
  if c is None:
    return "-"
  mean, std = 100 * c["analog_accuracy_mean"], 100 * c["analog_accuracy_std"]
  return f"{mean:.2f} +- {std:.2f} ({c['noise_seeds']}; {mean - 100 * software:+.2f})"


def main(out: str) -> None:
  print(
    "| row | recipe | software | converters only | PCM chips (n; vs software) "
    "| RRAM chips (n; vs software) |"
  )
  print("|---|---|---|---|---|---|")
  for key, (run, folder, what) in ROWS.items():
    r = _load(out, run, folder)
    if r is None:
      continue
    sw = r["test_accuracy"]
    print(
      f"| `{key}` | {what} | {100 * sw:.2f} | {100 * r['converters_only_accuracy']:.2f} "
      f"| {_chips(r, 'pcm_like', sw)} | {_chips(r, 'rram_taox', sw)} |"
    )
  for run, folder, what in DRIFTS:
    r = _load(out, run, folder)
    if r is None:
      continue
    sw = 100 * r["test_accuracy"]
    print(f"\nDrift, {what} ({run}/{folder}, {r['device']}, software {sw:.2f}):")
    print("\n| t (s) | chips |\n|---|---|")
    base = {"t_inference": r["chip"]["hardware"][r["device"]]["t_inference"]}
    base.update(r["chips"][r["device"]])  # The deployment itself, at hardware.t_inference.
    for d in sorted([base, *r["drift"]], key=lambda d: d["t_inference"]):
      mean, std = 100 * d["analog_accuracy_mean"], 100 * d["analog_accuracy_std"]
      print(f"| {d['t_inference']:g} | {mean:.2f} +- {std:.2f} ({d['noise_seeds']}) |")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "runs/recurrence")
