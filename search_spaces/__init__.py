"""Optuna define-by-run search spaces, one default per method, narrowed or extended by a study spec."""

from .define_by_run import StudySpace, build_space, optuna_name
from .params import Choice, Fixed, Float, Int, Param, describe, parse_param
from .spaces import SPACES, default_space

__all__ = ["SPACES", "default_space", "StudySpace", "build_space", "optuna_name", "Float", "Int", "Choice",
           "Fixed", "Param", "parse_param", "describe"]
