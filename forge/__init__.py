"""paperforge's shared core: configs, the runner, data, evaluation, ops and visualisation."""

__version__ = "0.1.0"
