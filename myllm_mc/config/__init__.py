"""Typed configuration: `load(path, overrides, world_size)` is the only way a run gets its settings."""

from .errors import ConfigError
from .loader import dump, from_dict, load, parse_override, to_dict
from .schema import (
                     CheckpointConfig,
                     Config,
                     DataConfig,
                     DiagnosticsConfig,
                     LoggingConfig,
                     ModelConfig,
                     OptimizerConfig,
                     ParallelConfig,
                     PlanConfig,
                     ScheduleConfig,
                     TrainingConfig,
)
from .validate import resolve_layout

__all__ = ["ConfigError", "load", "from_dict", "dump", "to_dict", "parse_override", "resolve_layout", "Config",
           "ModelConfig", "DataConfig", "ParallelConfig", "TrainingConfig", "OptimizerConfig", "ScheduleConfig",
           "CheckpointConfig", "LoggingConfig", "DiagnosticsConfig", "PlanConfig"]
