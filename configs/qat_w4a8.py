"""Shim of ssm_aimc/configs/qat_w4a8.py, the one source of this config."""

from ssm_aimc.configs.qat_w4a8 import *  # noqa: F403
from ssm_aimc.configs.qat_w4a8 import get_config  # noqa: F401
