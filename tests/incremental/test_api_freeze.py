"""The public API for method authors, ``incsweep.incremental.api``, is frozen: its names, and each
one's signature (functions, class constructors, public methods and dataclass fields), are compared with
tests/data/incremental_api.txt. A change to that surface is a release-note decision, made by
re-writing the file on purpose: ``python tests/incremental/test_api_freeze.py --write``."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).parents[1] / "data" / "incremental_api.txt"


def _signature(obj) -> str:
    try:
        text = str(inspect.signature(obj))
    except (TypeError, ValueError):  # builtins without a signature
        return "(...)"
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def surface() -> list[str]:
    """One line per public name and per public member of each public class, sorted."""
    from incsweep.incremental import api

    lines = []
    for name in sorted(api.__all__):
        obj = getattr(api, name)
        if inspect.isclass(obj):
            bases = ", ".join(b.__name__ for b in obj.__bases__)
            lines.append(f"class {name}({bases}){_signature(obj)}")
            if dataclasses.is_dataclass(obj):
                lines += [f"  field {name}.{f.name}: {f.type}" for f in dataclasses.fields(obj)]
            for member, value in sorted(vars(obj).items()):
                if member.startswith("_") or not callable(getattr(obj, member)):
                    continue
                kind = "classmethod" if isinstance(value, classmethod) else (
                    "staticmethod" if isinstance(value, staticmethod) else "method")
                lines.append(f"  {kind} {name}.{member}{_signature(getattr(obj, member))}")
        elif callable(obj):
            lines.append(f"def {name}{_signature(obj)}")
        else:
            lines.append(f"value {name}: {type(obj).__name__}")
    return lines


def test_the_method_authors_api_is_unchanged():
    frozen = SNAPSHOT.read_text().splitlines()
    now = surface()
    gone, new = sorted(set(frozen) - set(now)), sorted(set(now) - set(frozen))
    assert (gone, new) == ([], []), ("incsweep.incremental.api changed; if on purpose, run "
                                     "`python tests/incremental/test_api_freeze.py --write` and say so in the change")


def test_the_snapshot_covers_every_exported_name():
    from incsweep.incremental import api

    named = {re.match(r"(?:class|def|value) (\w+)", line).group(1) for line in SNAPSHOT.read_text().splitlines()
             if not line.startswith(" ")}
    assert named == set(api.__all__)



def test_lwf_and_ewc_are_written_on_the_public_api_alone():
    """Two built-in methods import nothing of incsweep but ``incsweep.incremental.api``, as a method
    from another package does: the API is enough to write one."""
    import ast

    methods = Path(__file__).resolve().parents[2] / "incremental" / "methods"
    for name in ("lwf.py", "ewc.py"):
        tree = ast.parse((methods / name).read_text())
        used = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert {m for m in used if m.startswith("incsweep")} == {"incsweep.incremental.api"}, name


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    SNAPSHOT.write_text("\n".join(surface()) + "\n")
    print(f"wrote {SNAPSHOT} ({len(surface())} lines)")
