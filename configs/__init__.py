"""Shims of the packaged configs in ssm_aimc/configs (one source): each file here
re-exports its module so `python launch.py --config=configs/<name>.py` and
`from configs import <name>` keep working in a clone."""
