"""Running one claim into its workdir, and gathering the claims' sections into CLAIMS.md."""

import dataclasses
import glob
import os
import shutil
import sys
import time

import jax
from absl import logging

from ssm_aimc import errors, runs, train
from ssm_aimc import workdir as workdir_lib
from ssm_aimc.claims import (
  c1_cost,
  c1_qs4d,
  c2_qs4d,
  c2_size_vs_precision,
  c3_qs4d,
  c3_robustness,
  c4_pruning,
  c4_qs4d,
  c5_deployment,
  common,
)

CLAIM_JSON = "claim.json"
CLAIM_MD = "claim.md"
# claim.name -> the module of the claim: Settings, measure, judge, render.
CLAIMS = {
  "c1": c1_cost,
  "c1_qs4d": c1_qs4d,
  "c2": c2_size_vs_precision,
  "c2_qs4d": c2_qs4d,
  "c3": c3_robustness,
  "c3_qs4d": c3_qs4d,
  "c4": c4_pruning,
  "c4_qs4d": c4_qs4d,
  "c5": c5_deployment,
}
CONFIG_FILES = {name: f"{claim.__name__.rsplit('.', 1)[-1]}.py" for name, claim in CLAIMS.items()}


def runs_of(exp, workdir: str) -> runs.Runs:
  """The models of a claim experiment: claim.models on the experiment without its claim
  section, in claim.models_dir ("" = workdir/models)."""
  root = exp.claim.get("models_dir") or os.path.join(workdir, "models")
  return runs.Runs(dataclasses.replace(exp, claim=None), root, exp.claim.get("models", {}))


def run_claim(config, workdir: str) -> dict:
  """Measures the claim of `config.claim.name`; writes claim.json, claim.md and claim.png."""
  exp = train.as_experiment(config)
  if exp.claim is None:
    raise errors.ConfigError("--mode=claim needs a claim config (configs/claims/*.py).")
  name = exp.claim.get("name")
  if name not in CLAIMS:
    raise errors.ConfigError(f"Unknown claim.name {name!r}; valid: {sorted(CLAIMS)}.")
  claim = CLAIMS[name]
  settings = common.settings(claim.Settings, exp.claim)  # Before anything is trained.
  with workdir_lib.lock(workdir):  # One launch per claim folder.
    start = time.time()
    models = runs_of(exp, workdir)
    numbers = claim.measure(exp, models, workdir)
    judged = claim.judge(numbers, settings)
    outcome = claim.render(numbers, judged, settings, exp.data.task, workdir)
    wall = time.time() - start
    record = {
      **dataclasses.asdict(outcome),
      "task": exp.data.task,
      "wall_time_s": wall,
      # What running the claim alone costs: every model it needs trained, plus its own work.
      "stage_seconds": models.seconds,
      "reused": models.reused,
      "standalone_time_s": models.standalone_seconds(wall),
      "platform": jax.default_backend(),
      "device": _device_name(),
      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
      "command": _command(name, workdir),
      "name": name,
    }
    workdir_lib.write_json(os.path.join(workdir, CLAIM_JSON), record)
    workdir_lib.write_text(os.path.join(workdir, CLAIM_MD), section(record, common.FIGURE))
  logging.info("%s %s: %s.", outcome.claim, outcome.title, outcome.verdict)
  shown = ("claim", "title", "verdict", "summary", "wall_time_s", "standalone_time_s")
  return {**{k: record[k] for k in shown}, "figure": os.path.join(workdir, common.FIGURE)}


def _command(name: str, workdir: str) -> str:
  """The command line that ran the claim (launch.py's own), else its plain form."""
  if sys.argv and os.path.basename(sys.argv[0]) == "launch.py":
    return " ".join(["python", *sys.argv])
  return (
    f"python launch.py --config=configs/claims/{CONFIG_FILES.get(name, name + '.py')} "
    f"--workdir={workdir} --mode=claim"
  )


def _device_name() -> str:
  device = jax.devices()[0]
  if device.platform == "cpu":
    return f"{os.cpu_count()}-core CPU"
  return f"{device.platform} {device.device_kind}"


def _protocol(record: dict) -> str:
  return record.get("protocol", common.OURS)


def _order(record: dict) -> tuple:
  """Claims in order, each claim's protocols in `common.PROTOCOLS` order."""
  return record["claim"], common.PROTOCOLS.index(_protocol(record))


def _heading(record: dict) -> str:
  return f"{record['claim']}: {record['title']} ({_protocol(record)})"


def _minutes(seconds: float) -> str:
  return f"{seconds / 60:.1f} min"


def _alone(seconds: float | None) -> str:
  if seconds is None:
    return "unknown when run alone (results kept by an older version recorded no time)."
  return f"about {_minutes(seconds)} when run alone (every model it needs trained)."


def section(record: dict, figure: str) -> str:
  """The markdown section of one claim (figure: path relative to the markdown file)."""
  reused = f" (reused from earlier runs: {', '.join(record['reused'])})"
  return "\n".join(
    [
      f"## {_heading(record)} — **{record['verdict']}**",
      "",
      f"*Claim.* {record['statement']}",
      "",
      f"*Rule.* {record['rule']}",
      "",
      f"*Measured* ({record['task']}, {record['device']}, {record['date']}). {record['summary']}",
      "",
      record["table"],
      "",
      f"![{record['claim']}]({figure})",
      "",
      f"`{record['command']}`: {_minutes(record['wall_time_s'])} in this run"
      f"{reused if record['reused'] else ''}; {_alone(record['standalone_time_s'])}",
      "",
    ]
  )


def write_report(runs_dir: str, out: str, figure_dir: str = "docs/claims") -> str:
  """Gathers runs_dir/*/claim.json into the markdown file `out`; figures are copied into
  `figure_dir` (relative to out's folder). Returns the path written."""
  paths = glob.glob(os.path.join(runs_dir, "*", CLAIM_JSON))
  if not paths:
    raise errors.DataError(f"No {CLAIM_JSON} under {runs_dir}/*: run the claims first.")
  found = sorted(
    ((workdir_lib.read_json(p), os.path.dirname(p)) for p in paths), key=lambda f: _order(f[0])
  )
  root = os.path.dirname(os.path.abspath(out))
  os.makedirs(os.path.join(root, figure_dir), exist_ok=True)
  sections = []
  for record, folder in found:
    target = os.path.join(figure_dir, f"{record.get('name', record['claim'].lower())}.png")
    shutil.copyfile(os.path.join(folder, record["figure"]), os.path.join(root, target))
    sections.append(section(record, target))
  overview = common.markdown_table(
    ["claim", "verdict", "time alone", "time in this run"],
    [
      [
        _heading(r),
        f"**{r['verdict']}**",
        "unknown" if r["standalone_time_s"] is None else _minutes(r["standalone_time_s"]),
        _minutes(r["wall_time_s"]),
      ]
      for r, _ in found
    ],
  )
  text = "\n".join(
    [
      "# The paper's claims, measured",
      "",
      "Written by `make reproduce` (`python -m ssm_aimc.claims`) from the claim runs in "
      f"`{runs_dir}`; every number below is one of those runs. Verdicts follow the rule "
      "printed with each claim. Claims: QS4D (arXiv 2507.06079), on the embedded task at CPU "
      "size; the `:paper` variant of each config is the paper-scale run. Where the authors' "
      "own way of measuring a claim is known (their public code and figures), it comes first "
      "and gives the claim's verdict; this project's own protocol follows as a second row.",
      "",
      overview,
      "",
      *sections,
    ]
  )
  workdir_lib.write_text(out, text)
  return out
