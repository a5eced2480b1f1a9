"""Random mutations of a valid study spec never escape as a traceback: every one either
parses or is a ConfigError, which the CLI prints as one line with exit 2. Mutations replace values at
any depth with values of other types and ranges (None, NaN, inf, 2^63, strings, lists, mappings),
delete keys and add unknown ones; the generator is seeded, so a failure reproduces."""

from __future__ import annotations

import copy
import random
import traceback
from typing import Any, Iterator

from incsweep.core.errors import ConfigError
from incsweep.study.spec import StudySpec

BASE: dict[str, Any] = {
    "name": "m", "methods": ["replay", "finetune"], "trials": 4, "concurrency": 2, "seed": 0,
    "benchmark": {"name": "synthetic", "n_classes": 4, "image_size": 16, "train_per_class": 8, "test_per_class": 4,
                  "val_fraction": 0.25},
    "search": {"replay": {"backbone": "tiny", "width": 4, "lr": {"low": 0.01, "high": 0.1, "log": True},
                          "memory_size": {"choices": [4, 8]}},
               "finetune": {"epochs": {"low": 1, "high": 3}}},
    "objectives": ["avg_acc:max", "total_mb:min"], "constraints": ["total_mb <= 1"],
    "sampler": {"name": "tpe", "startup_trials": 2}, "scheduler": {"name": "asha", "grace_period": 1},
    "resources": {"cpu": 1, "gpu": 0}, "enqueue": [{"method": "replay", "params": {"lr": 0.05}}],
    "callbacks": ["csv"], "protocol": "end_of_training", "prefix_cache": True,
}
VALUES: list[Any] = [None, 0, -1, 1, 2, 1.5, -0.5, 1e308, float("nan"), float("inf"), -float("inf"), "abc", "", "0",
                     "1e-3", [], {}, [1, 2], {"low": "x"}, {"low": 1, "high": 0}, {"choices": []}, {"value": [1]},
                     True, False, 2**63, 2**40, ["a"], {"a": 1}, "seed1", "natural", "tpe", "max"]
N_SPECS = 3000  # 4.8 s here; every escape found while writing this test came up within the first 500


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


def _mutate(rng: random.Random, spec: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(list(_paths(spec)))
        parent: Any = spec
        for key in path[:-1]:
            parent = parent[key]
        roll = rng.random()
        if roll < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif roll < 0.25 and isinstance(parent, dict):
            parent[rng.choice(["nope", "extra", "lr", "low"])] = copy.deepcopy(rng.choice(VALUES))
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(VALUES))
    return spec


def test_the_base_spec_is_valid():
    StudySpec.from_dict(BASE)


def test_no_mutated_spec_escapes_as_a_traceback():
    rng = random.Random(0)
    escaped = []
    parsed = 0
    for _ in range(N_SPECS):
        spec = _mutate(rng, BASE)
        try:
            StudySpec.from_dict(spec)
            parsed += 1
        except ConfigError as err:
            assert "\n" not in str(err), str(err)  # one line
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            where = traceback.extract_tb(exc.__traceback__)[-1]
            escaped.append(f"{type(exc).__name__} at {where.filename}:{where.lineno}: {exc} <- {spec}")
    assert not escaped, f"{len(escaped)} of {N_SPECS} escaped; first: {escaped[0]}"
    assert 0 < parsed < N_SPECS  # the mutations reach both outcomes
