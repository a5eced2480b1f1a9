"""Task-prefix cache: keys, soundness of fields_for_tasks, exact reuse, LRU, concurrency, corruption, CLI.

Everything trains for real on tiny synthetic tasks (tiny backbone, 1-2 epochs)."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from incsweep.cli import main as cli_main
from incsweep.core.errors import ConfigError
from incsweep.incremental.contract import TIMING
from incsweep.incremental.methods.base import MethodConfig
from incsweep.incremental.prefix_cache import (
    PrefixCache,
    prefix_fields,
    prefix_key,
    prefix_state,
    run_through_cache,
    start_state,
)
from incsweep.incremental.run import CHECKPOINT_FILE, RunConfig, load_checkpoint, run

BENCH = {"name": "synthetic", "n_classes": 6, "image_size": 12, "train_per_class": 24, "test_per_class": 8,
         "val_fraction": 0.25}
FAST = {
    "finetune": {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 16, "lr": 0.05, "init_epochs": 2,
                 "init_lr": 0.1, "init_weight_decay": 5e-4, "init_milestones": []},
    "bmkp": {"width": 4, "epochs": 1, "retrain_epochs": 1, "batch_size": 16, "example_num": 24, "milestones": [],
             "init_epochs": 2, "init_lr": 0.05, "init_milestones": []},
    "replay": {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 16, "memory_size": 12, "init_epochs": 2,
               "init_lr": 0.1, "init_weight_decay": 5e-4, "init_milestones": []},
    "memo": {"backbone": "resnet14", "width": 4, "epochs": 1, "batch_size": 16, "memory_size": 12, "init_epochs": 2,
             "init_lr": 0.1, "init_weight_decay": 5e-4, "init_milestones": [], "milestones": []},
}
# Per method: fields that act only from task 1 on, with another valid value each.
LATER = {
    "finetune": {"lr": 0.02, "epochs": 2, "weight_decay": 0.0, "milestones": [1]},
    "bmkp": {"gamma": 0.8, "lam": 1.0, "lr": 0.02, "epochs": 2},
    "replay": {"lr": 0.02, "epochs": 2},
    "memo": {"alpha_aux": 0.5, "train_base": False, "weight_align": False, "lr": 0.02, "epochs": 2},
}
V = "test-version"


def config(method: str = "finetune", seed: int = 0, bench: dict | None = None, **overrides) -> RunConfig:
    return RunConfig.from_dict({"method": method, "seed": seed, "benchmark": {**BENCH, **(bench or {})},
                                "method_config": {**FAST[method], **overrides}})


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def comparable(result) -> list[dict]:
    """Every per-task figure except timings."""
    return untimed([t.as_dict() for t in result.tasks])


def other_value(f: dataclasses.Field, value):
    """A different valid value for a MethodConfig field (for the key test)."""
    if f.name == "backbone":
        return "resnet20"
    if f.name == "schedule":
        return "cosine"
    if f.name == "bn_stats":
        return "running"
    if isinstance(value, bool):
        return not value
    if isinstance(value, tuple) or f.name in ("milestones", "init_milestones"):
        return (1,)
    if f.name == "width":
        return 8
    if value is None:
        return {"init_epochs": 3, "init_lr": 0.3, "init_weight_decay": 0.01}[f.name]
    return value * 0.5 if isinstance(value, float) and value else (value + 1 if isinstance(value, int) else 0.1)


# ---- keys ---------------------------------------------------------------------------------------
def test_key_changes_exactly_when_a_prefix_field_changes():
    base = RunConfig.from_dict({"method": "finetune", "benchmark": BENCH,
                                "method_config": {"backbone": "tiny", "init_lr": 0.2}})  # init_epochs unset
    prefix = prefix_fields(base, 1)
    assert {"init_lr", "epochs", "init_epochs", "backbone", "batch_size"} <= prefix
    assert "lr" not in prefix and "weight_decay" in prefix  # init_lr is set; init_weight_decay is not
    k1, k2 = prefix_key(base, 1, V), prefix_key(base, 2, V)
    for f in dataclasses.fields(MethodConfig):
        changed = dataclasses.replace(base, method_config=dataclasses.replace(
            base.method_config, **{f.name: other_value(f, getattr(base.method_config, f.name))}))
        assert (prefix_key(changed, 1, V) != k1) == (f.name in prefix), f.name
        assert prefix_key(changed, 2, V) != k2, f.name  # after task 1 every field counts
    # everything outside the method config is always in the key
    for changed in (dataclasses.replace(base, seed=1), dataclasses.replace(base, eval_batch_size=7),
                    dataclasses.replace(base, augment_policy="fmnist"),
                    RunConfig.from_dict({**base.to_dict(), "benchmark": {**BENCH, "data_seed": 3}})):
        assert prefix_key(changed, 1, V) != k1
    assert prefix_key(base, 1, "other-code") != k1


def test_bmkp_prefix_leaves_out_gamma_lam_and_overridden_schedule_fields():
    cfg = config("bmkp")  # init_epochs, init_lr, init_milestones set; init_weight_decay not
    every = frozenset(f.name for f in dataclasses.fields(cfg.method_config))
    assert prefix_fields(cfg, 1) == every - {"gamma", "lam", "epochs", "lr", "milestones"}
    assert prefix_fields(config("bmkp", init_lr=None), 1) == every - {"gamma", "lam", "epochs", "milestones"}
    assert prefix_key(cfg, 1, V) == prefix_key(config("bmkp", **LATER["bmkp"]), 1, V)
    assert prefix_key(cfg, 1, V) != prefix_key(config("bmkp", gamma_first=0.8), 1, V)


@pytest.mark.parametrize("method", ["finetune", "bmkp", "replay", "memo"])
def test_declared_fields_are_sound(method, tmp_path):
    """Changing every field the method leaves out of task 0's set leaves the state after task 0 bit-identical."""
    assert set(LATER[method]).isdisjoint(prefix_fields(config(method), 1))
    a = load_checkpoint_after(config(method), tmp_path / "a", 1)
    b = load_checkpoint_after(config(method, **LATER[method]), tmp_path / "b", 1)
    assert untimed(a["results"]) == untimed(b["results"])
    assert_same_tensors(a["method"], b["method"])


def assert_same_tensors(a, b) -> None:
    """Nested state dicts/lists equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_tensors(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_tensors(x, y)
    else:
        assert a == b


# ---- exact reuse ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["finetune", "bmkp", "replay", "memo"])
def test_start_from_cache_equals_scratch(method, tmp_path):
    cache = PrefixCache(tmp_path / "cache", version=V)
    first = config(method)
    ckpt = tmp_path / "ckpt"
    _, n_cached = run_through_cache(first, cache, checkpoint_dir=ckpt)
    assert n_cached == 0 and [e.n_done for e in cache.entries()] == [1]  # only the shareable prefix is kept

    second = config(method, **LATER[method])
    state, n_done = start_state(second, cache)
    assert n_done == 1  # only the task-0 prefix is second's too
    seen = []
    reused, n_cached = run_through_cache(second, cache, checkpoint_dir=tmp_path / "ckpt2", on_cached=seen.append)
    assert n_cached == 1 and [len(s["results"]) for s in seen] == [1]
    scratch = run(second)
    assert comparable(reused) == comparable(scratch)
    assert len(reused.tasks) == scratch.final.n_tasks
    # a config differing in a task-0 field finds nothing
    assert start_state(config(method, seed=5), cache) == (None, 0)


def test_run_still_refuses_a_foreign_checkpoint(tmp_path):
    first, second = config(), config(**LATER["finetune"])
    raw = dict(load_checkpoint_after(first, tmp_path, 1))
    with pytest.raises(ConfigError, match="different config"):
        run(second, initial_state=raw)  # the normal resume check is untouched
    prefix_state(raw, second, 1, V)  # the explicit way accepts a compatible config
    with pytest.raises(ConfigError, match="acts on those tasks"):
        prefix_state(raw, config(init_lr=0.3), 1, V)
    with pytest.raises(ConfigError, match="after 2 task"):
        prefix_state(raw, second, 2, V)


def load_checkpoint_after(cfg: RunConfig, tmp_path: Path, n: int) -> dict:
    ckpt = tmp_path / f"ck-{cfg.seed}-{n}"
    run(cfg, checkpoint_dir=ckpt, stop_after=n)
    return load_checkpoint(ckpt / CHECKPOINT_FILE)


# ---- storage: LRU, corruption, concurrency ---------------------------------------------------------
@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """Real states after task 0 for three seeds."""
    root = tmp_path_factory.mktemp("states")
    return {seed: load_checkpoint_after(config(seed=seed), root, 1) for seed in range(3)}


def two_entry_cache(states, tmp_path):
    """A cache that holds two and a half entries' bytes, seeds 0 and 1 in it: the third put evicts."""
    probe = PrefixCache(tmp_path / "probe", max_bytes=None, version=V)
    probe.put(config(seed=0), states[0], 1)
    cache = PrefixCache(tmp_path / "c", max_bytes=int(2.5 * probe.total_bytes()), version=V)
    return cache, cache.put(config(seed=0), states[0], 1), cache.put(config(seed=1), states[1], 1)


def test_lru_evicts_least_recently_used(states, tmp_path):
    import os

    cache, k0, k1 = two_entry_cache(states, tmp_path)
    os.utime(tmp_path / "c" / f"{k0}.json", (1_000, 1_000))  # both old, seed 0 older
    os.utime(tmp_path / "c" / f"{k1}.json", (2_000, 2_000))
    assert cache.get(config(seed=0), 1) is not None  # a hit makes seed 0 the most recent
    k2 = cache.put(config(seed=2), states[2], 1)
    assert {e.key for e in cache.entries()} == {k0, k2}  # seed 1 was least recently used
    assert cache.total_bytes() <= cache.max_bytes
    tiny = PrefixCache(tmp_path / "t", max_bytes=100, version=V)
    assert tiny.put(config(seed=0), states[0], 1) is None and tiny.entries() == []


def test_eviction_reads_no_entry(states, tmp_path, monkeypatch):
    """A put evicts from the directory's sizes and times alone: reading every entry's metadata at each
    put grew with the study (0.38 s a trial at 4,500 entries). An unreadable entry still counts and
    goes first when it is the least recently used."""
    import os

    cache, k0, k1 = two_entry_cache(states, tmp_path)
    (tmp_path / "c" / f"{k0}.json").write_text("{not json")
    os.utime(tmp_path / "c" / f"{k0}.json", (1_000, 1_000))
    os.utime(tmp_path / "c" / f"{k1}.json", (2_000, 2_000))

    def no_reading(self):
        raise AssertionError("eviction read the entries")

    monkeypatch.setattr(PrefixCache, "entries", no_reading)
    k2 = cache.put(config(seed=2), states[2], 1)
    assert sorted(p.stem for p in (tmp_path / "c").glob("*.json")) == sorted([k1, k2])


def test_a_put_scans_the_directory_only_when_the_ledger_says_the_limit_may_be_passed(states, tmp_path, monkeypatch):
    """A scan at every put grew with the study (6.7% of a trial's time at 4,500 entries). The ledger
    keeps the bytes: a put under the limit does not scan, one that would pass it scans and evicts,
    and every RESCAN_EVERY puts a scan sees what was written outside the ledger."""
    from incsweep.incremental import prefix_cache as pc

    scans = []
    real = PrefixCache._sizes
    monkeypatch.setattr(PrefixCache, "_sizes", lambda self: scans.append(1) or real(self))
    cache, k0, k1 = two_entry_cache(states, tmp_path)
    assert len(scans) == 1  # the first put: no ledger yet
    total, puts = map(int, (tmp_path / "c" / ".bytes").read_text().split())
    assert total == sum(b for _, _, b in real(cache)) and puts == 1
    k2 = cache.put(config(seed=2), states[2], 1)  # passes 2.5 entries: scans and evicts seed 0
    assert len(scans) == 2 and sorted(p.stem for p in (tmp_path / "c").glob("*.json")) == sorted([k1, k2])
    assert int((tmp_path / "c" / ".bytes").read_text().split()[0]) == sum(b for _, _, b in real(cache))

    big = PrefixCache(tmp_path / "big", max_bytes=10**9, version=V)
    monkeypatch.setattr(pc, "RESCAN_EVERY", 4)
    for i in range(9):
        big.put(config(seed=i % 3), states[i % 3], 1)
    assert len(scans) == 2 + 3  # puts 1 (no ledger), 5 and 9: the 4th put after each scan scans again
    (tmp_path / "big" / ".bytes").write_text("garbage")  # a damaged ledger is never trusted: scan
    big.put(config(seed=0), states[0], 1)
    assert len(scans) == 6 and len(big.entries()) == 3

    class NoLockManager:  # an NFS mount without one: flock fails with ENOLCK
        LOCK_EX = LOCK_UN = 0

        @staticmethod
        def flock(f, op):
            raise OSError(37, "No locks available")

    monkeypatch.setattr(pc, "fcntl", NoLockManager)
    for i in range(3):
        big.put(config(seed=i), states[i], 1)
    assert len(scans) == 9  # without the lock the ledger is not trusted: every put scans


def test_corrupt_entry_is_ignored_with_a_warning(states, tmp_path, caplog):
    cache = PrefixCache(tmp_path, version=V)
    key = cache.put(config(), states[0], 1)
    (tmp_path / f"{key}.pt").write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="incsweep.incremental.prefix_cache"):
        assert cache.get(config(), 1) is None
    assert "corrupt entry" in caplog.text and key in caplog.text
    assert cache.entries() == []  # removed, so it warns once
    key = cache.put(config(), states[0], 1)
    (tmp_path / f"{key}.json").write_text("{truncated")
    assert cache.get(config(), 1) is None
    assert cache.put(config(), states[0], 1) == key and cache.get(config(), 1) is not None


WRITER = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from incsweep.incremental.prefix_cache import PrefixCache
    from incsweep.incremental.run import RunConfig, load_checkpoint
    cache = PrefixCache(sys.argv[1], max_bytes=int(sys.argv[3]), version="test-version")
    for path in sys.argv[4:] * 15:
        state = load_checkpoint(path)
        cache.put(RunConfig.from_dict(__import__("json").loads(state["config"])), state, 1)
        cache.entries()
    print("ok", sys.argv[2])
""")


def test_concurrent_writers_leave_a_valid_cache(states, tmp_path):
    paths = []
    for seed, state in states.items():
        paths.append(tmp_path / f"s{seed}.pt")
        torch.save(state, paths[-1])
    cache_dir = tmp_path / "shared"
    probe = PrefixCache(tmp_path / "probe", max_bytes=None, version=V)
    probe.put(config(seed=0), states[0], 1)
    limit = int(2.5 * probe.total_bytes())  # forces evictions while both write
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(cache_dir), str(i), str(limit),
                               *map(str, paths[i:] + paths[:i])], stdout=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    cache = PrefixCache(cache_dir, max_bytes=limit, version=V)
    entries = cache.entries()
    assert 1 <= len(entries) <= 2 and not list(cache_dir.glob("*.tmp*"))
    for e in entries:
        seed = json.loads((cache_dir / f"{e.key}.json").read_text())["config"]["seed"]
        assert cache.get(config(seed=seed), 1)["results"] == states[seed]["results"]


# ---- CLI ----------------------------------------------------------------------------------------------
def test_cli_ls_stats_clear(states, tmp_path, capsys):
    cache = PrefixCache(tmp_path, version=V)
    keys = [cache.put(config(seed=s), states[s], 1) for s in (0, 1)]
    assert cli_main(["cache", "ls", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(k in out for k in keys) and "2 entries" in out and "finetune" in out
    assert cli_main(["cache", "stats", "--dir", str(tmp_path)]) == 0
    assert "finetune" in capsys.readouterr().out
    assert cli_main(["cache", "clear", "--dir", str(tmp_path)]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert cache.entries() == []
    assert cli_main(["cache", "ls", "--dir", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_limit_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="max_bytes"):
        PrefixCache(tmp_path, max_bytes=0)
