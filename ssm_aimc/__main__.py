"""`python -m ssm_aimc`: the command line of ssm_aimc.cli (the same as `ssm-aimc`)."""

from ssm_aimc import cli

if __name__ == "__main__":
  cli.main()
