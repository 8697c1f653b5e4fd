"""Shim of ssm_aimc/configs/scifar.py, the one source of this config."""

from ssm_aimc.configs.scifar import *  # noqa: F403
from ssm_aimc.configs.scifar import get_config  # noqa: F401
