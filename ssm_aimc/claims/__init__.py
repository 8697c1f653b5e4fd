r"""The paper's five claims, each reproduced by one command and judged by a stated rule.

  python launch.py --config=configs/claims/c1_cost.py --workdir=runs/claims/c1 --mode=claim
  make reproduce    # all five into runs/claims, then CLAIMS.md with the figures

A claim config is an ordinary config (task, model size and seed of every run it trains)
with a `claim` section: `name` (a key of CLAIMS), `models_dir` (where its models are
trained, "" = workdir/models; claims given the same folder share models), `models` (name ->
{init_from, overrides}: every model it needs, as overrides of the base config, fine-tuned
from model `init_from` if set) and the claim's own settings (its module's `Settings`; an
unknown key is an error). Each model is an ordinary training run in models_dir/<name>
(ssm_aimc.runs.Runs: reused when it finished with the same config, refused when another
config wrote it).

One module per claim (c1_cost ... c5_deployment), each with
  measure(exp, runs, workdir) -> numbers   trains, evaluates, deploys or sweeps what the
                                           claim needs; plain JSON-able numbers;
  judge(numbers, settings) -> judged       the rule on the numbers: {"verdict", ...}, pure;
  render(numbers, judged, settings, task, workdir) -> common.Outcome
                                           summary, table, claim.json numbers; claim.png.
`report.run_claim` writes claim.json, claim.md (its section of CLAIMS.md) and claim.png
into the claim's workdir; `python -m ssm_aimc.claims --runs=runs/claims --out=CLAIMS.md`
gathers the sections (`report.write_report`). Verdicts are "supported", "partly supported"
or "not supported", decided by the rule printed next to each: the numbers decide, not the
paper.
"""

from ssm_aimc.claims import common, report

SUPPORTED, PARTLY, NOT_SUPPORTED = common.SUPPORTED, common.PARTLY, common.NOT_SUPPORTED
CLAIMS, CONFIG_FILES = report.CLAIMS, report.CONFIG_FILES
run_claim, write_report = report.run_claim, report.write_report
