"""Shim of ssm_aimc/configs/qat_ternary.py, the one source of this config."""

from ssm_aimc.configs.qat_ternary import *  # noqa: F403
from ssm_aimc.configs.qat_ternary import get_config  # noqa: F401
