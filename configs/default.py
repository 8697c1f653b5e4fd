"""Shim of ssm_aimc/configs/default.py, the one source of this config."""

from ssm_aimc.configs.default import *  # noqa: F403
from ssm_aimc.configs.default import get_config  # noqa: F401
