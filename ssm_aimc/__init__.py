"""ssm-aimc: S4D state-space models made small and robust for analog in-memory computing."""

__version__ = "0.1.0"
