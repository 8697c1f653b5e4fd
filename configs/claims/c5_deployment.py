"""Shim of ssm_aimc/configs/claims/c5_deployment.py, the one source of this config."""

from ssm_aimc.configs.claims.c5_deployment import *  # noqa: F403
from ssm_aimc.configs.claims.c5_deployment import get_config  # noqa: F401
