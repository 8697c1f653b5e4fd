r"""The clone's command line, a shim of `ssm_aimc.cli` (also the `ssm-aimc` console script
and `python -m ssm_aimc`); its docstring lists the commands.

  python launch.py --config=configs/default.py --workdir=runs/default
  python launch.py --config=configs/default.py:smoke --workdir=/tmp/smoke \
      --config.model.d_model=32 --config.num_epochs=3
  python launch.py --config=configs/default.py --workdir=runs/default --mode=evaluate
  python launch.py --config=configs/default.py --workdir=runs/default --mode=deploy
  python launch.py --config=configs/sweep_bits.py --workdir=runs/sweep --mode=sweep
  python launch.py --config=configs/claims/c1_cost.py --workdir=runs/claims/c1 --mode=claim
"""

from ssm_aimc import cli

if __name__ == "__main__":
  cli.main()
