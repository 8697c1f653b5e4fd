"""Shim of ssm_aimc/configs/imssa_chip.py, the one source of this config."""

from ssm_aimc.configs.imssa_chip import *  # noqa: F403
from ssm_aimc.configs.imssa_chip import get_config  # noqa: F401
