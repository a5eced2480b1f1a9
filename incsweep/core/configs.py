"""Typed, frozen, validated configs built from plain mappings (YAML, JSON, ``--set`` overrides).

Fields declare their constraints in dataclass metadata (``spec(range=..)`` / ``spec(choices=..)``)
so that validation, error messages and the search spaces read one source of truth.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from incsweep.core.errors import ConfigError

__all__ = ["spec", "validate", "coerce", "read_yaml_file", "config_path", "shipped_configs", "from_mapping",
           "to_mapping", "parse_override", "apply_overrides"]


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives a key twice: PyYAML keeps the last silently,
    so ``lr: 0.1`` ... ``lr: 0.5`` in one spec would run 0.5 without a word. Keys merged in with
    ``<<`` may be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML's own check refuses it below
                continue
            if first is not None:
                raise _DuplicateKey(problem=f"key {key!r} appears twice (lines {first} and {line}); give it once",
                                    problem_mark=key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# The configs shipped with incsweep (configs/ in the repository, incsweep/configs in an install):
# study specs under studies/, run configs of the papers under bmkp/ and memo/.
SHIPPED_KINDS = {"study spec": ("studies",), "config file": ("bmkp", "memo", "")}


def shipped_configs(what: str) -> dict[str, Path]:
    """The configs incsweep ships for ``what`` ("study spec" or "config file"), by name: a study spec
    by its file stem (``demo``), a run config by folder and stem (``memo/cifar100_b0_inc10``)."""
    from importlib.resources import files

    root = Path(str(files("incsweep"))) / "configs"
    found: dict[str, Path] = {}
    for folder in SHIPPED_KINDS[what]:
        for path in sorted((root / folder).glob("*.yaml")) if (root / folder).is_dir() else []:
            found[path.stem if what == "study spec" else f"{folder}/{path.stem}".lstrip("/")] = path
    return found


def config_path(name: str | Path, what: str) -> Path:
    """``name`` as a file path when it is one, else the shipped config of that name (``demo``,
    ``memo/cifar100_b0_inc10``; ``.yaml`` optional). Neither: a one-line error listing the names."""
    path = Path(name)
    if path.exists():
        return path
    shipped = shipped_configs(what)
    key = str(name).removesuffix(".yaml")
    if key in shipped:
        return shipped[key]
    names = ", ".join(sorted(shipped)) or "none"
    if path.is_absolute() or path.suffix in (".yaml", ".yml", ".json") or str(name).startswith((".", "~")):
        raise ConfigError(f"{what} {name} does not exist (shipped configs, by name: {names})")
    raise ConfigError(f"{what} {str(name)!r}: no such file, and no config shipped by that name; shipped: {names}")


def read_yaml_file(path: str | Path, what: str) -> Any:
    """The YAML in ``path``; a missing, binary or malformed file, or one giving a key twice, is a
    one-line ConfigError naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {path} does not exist" if not p.exists() else f"{what} {path} is not a file")
    try:
        return yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except _DuplicateKey as exc:
        raise ConfigError(f"{what} {path}: {exc.problem}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); "
                          "it must be YAML") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{what} {path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None


def spec(default: Any, *, range: tuple | None = None, choices: tuple | None = None, help: str = "") -> Any:
    """A dataclass field with a validated range (inclusive) or a set of choices."""
    kwargs: dict[str, Any] = {"metadata": {"range": range, "choices": choices, "help": help}}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in frozen configs")
    return dataclasses.field(default=default, **kwargs)


def _where(obj: Any, name: str) -> str:
    return f"{type(obj).__name__}.{name}"


def validate(obj: Any) -> None:
    """Check every field of a config dataclass against its declared range/choices."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        rng = f.metadata.get("range")
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{_where(obj, f.name)}={value!r} is not allowed; choose one of {list(choices)}")
        if rng is not None:
            values = value if isinstance(value, tuple) else (value,)
            lo, hi = rng
            for v in values:
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"{_where(obj, f.name)}={value!r} must be a finite number")
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    raise ConfigError(
                        f"{_where(obj, f.name)}={value!r} is out of range; allowed [{lo}, {hi}]"
                    )


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where} must not be empty")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return from_mapping(tp, value, where=where)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        return tuple(_coerce(v, item_tp, where) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={value!r} must be true or false")
    if tp is int:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (isinstance(value, float) and not math.isfinite(value)) or int(value) != value):
            raise ConfigError(f"{where}={value!r} must be a whole number")
        return int(value)
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 5e-4, without a dot, as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}={value!r} must be a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}={value!r} must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}={value!r} must be a string")
        return value
    return value


def coerce(cls: type, name: str, value: Any, *, where: str | None = None) -> Any:
    """``value`` checked against the type of field ``name`` of config ``cls`` (YAML's numbers made
    float where the field is; no other conversion: 2.7 is no whole number, "two" no number)."""
    return _coerce(value, typing.get_type_hints(cls)[name], where or name)


def from_mapping(cls: type, data: Mapping[str, Any], *, where: str | None = None) -> Any:
    """Build config ``cls`` from a mapping; unknown keys are an error that lists the allowed ones."""
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{where}: {err}") from None


def to_mapping(obj: Any) -> dict[str, Any]:
    """A config as plain YAML/JSON-able data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    return plain(obj)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], parsed value); the value is read as YAML (numbers, lists, bools)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r} is malformed; expected KEY=VALUE, e.g. lr=0.05 or benchmark.train_per_class=200")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: value {raw!r} is not valid YAML") from None
    return key.split("."), value


def apply_overrides(data: Mapping[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """Return a copy of nested ``data`` with ``path`` set to ``value``."""
    out = dict(data)
    head, *rest = path
    if rest:
        inner = out.get(head) or {}
        if not isinstance(inner, Mapping):
            raise ConfigError(f"--set {'.'.join(path)}: {head!r} is not a mapping")
        out[head] = apply_overrides(inner, rest, value)
    else:
        out[head] = value
    return out
