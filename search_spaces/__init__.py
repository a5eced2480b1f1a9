"""Optuna define-by-run search spaces: each method's default (``Method.search_space``), narrowed or
extended by a study spec. The parameter types are ``incsweep.core.params``'s, re-exported here."""

from __future__ import annotations

from incsweep.core.params import Choice, Fixed, Float, Int, Param, describe, parse_param
from incsweep.search_spaces.define_by_run import StudySpace, build_space, optuna_name
from incsweep.search_spaces.spaces import default_space

__all__ = ["default_space", "StudySpace", "build_space", "optuna_name", "Float", "Int", "Choice", "Fixed", "Param",
           "parse_param", "describe"]
