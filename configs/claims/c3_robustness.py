"""Shim of ssm_aimc/configs/claims/c3_robustness.py, the one source of this config."""

from ssm_aimc.configs.claims.c3_robustness import *  # noqa: F403
from ssm_aimc.configs.claims.c3_robustness import get_config  # noqa: F401
