"""`python -m ssm_aimc.claims --runs=runs/claims --out=CLAIMS.md --figures=docs/claims`:
gathers the claim runs into one markdown file (`make reproduce`'s last step)."""

from absl import app, flags

from ssm_aimc.claims import report

_RUNS = flags.DEFINE_string("runs", "runs/claims", "Folder with one sub-folder per claim run.")
_OUT = flags.DEFINE_string("out", "CLAIMS.md", "Markdown file to write.")
_FIGURES = flags.DEFINE_string("figures", "docs/claims", "Folder for the figures, next to --out.")


def main(argv) -> None:
  del argv
  print(f"Wrote {report.write_report(_RUNS.value, _OUT.value, _FIGURES.value)}.")


if __name__ == "__main__":
  app.run(main)
