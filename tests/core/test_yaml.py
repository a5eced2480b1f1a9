"""Config and spec files: a key given twice is refused with its name and both lines (PyYAML alone
keeps the last one silently); merge keys may still be overridden, as YAML intends."""

from __future__ import annotations

import pytest

from incsweep.cli import main
from incsweep.core.configs import read_yaml_file
from incsweep.core.errors import ConfigError


def test_a_key_given_twice_names_the_key_and_both_lines(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nsearch:\n  finetune:\n    lr: 0.1\n    width: 8\n    lr: 0.5\n")
    with pytest.raises(ConfigError, match=r"s\.yaml: key 'lr' appears twice \(lines 4 and 6\); give it once"):
        read_yaml_file(path, "study spec")
    path.write_text("benchmark: {name: synthetic, name: mnist}\n")  # one line, flow style
    with pytest.raises(ConfigError, match=r"key 'name' appears twice \(lines 1 and 1\)"):
        read_yaml_file(path, "study spec")


def test_merge_keys_may_be_overridden_and_plain_files_load(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("base: &b {lr: 0.1, width: 8}\nrun:\n  <<: *b\n  lr: 0.5\nlist: [1, 1]\n")
    assert read_yaml_file(path, "config") == {"base": {"lr": 0.1, "width": 8}, "run": {"lr": 0.5, "width": 8},
                                              "list": [1, 1]}


def test_the_cli_refuses_a_spec_with_a_duplicate_key_before_anything_starts(tmp_path, capsys):
    spec = tmp_path / "dup.yaml"
    spec.write_text("name: dup\nmethods: [finetune]\ntrials: 2\ntrials: 20\n")
    storage = tmp_path / "st"
    assert main(["study", "run", str(spec), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "key 'trials' appears twice (lines 3 and 4)" in err[0]
    assert not storage.exists()
