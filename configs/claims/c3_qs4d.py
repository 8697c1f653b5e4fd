"""Shim of ssm_aimc/configs/claims/c3_qs4d.py, the one source of this config."""

from ssm_aimc.configs.claims.c3_qs4d import *  # noqa: F403
from ssm_aimc.configs.claims.c3_qs4d import get_config  # noqa: F401
