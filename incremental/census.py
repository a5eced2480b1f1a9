"""The engine's own count of what a method holds, checked against what its ``memory()`` reports.

A method is untrusted input: its ``memory()`` is a claim. After every task the run loop
(``incremental.run``) takes a census of every tensor the method can reach from its attributes,
wherever it was made (``__init__``, ``begin_task``, ``end_task``, ``load_state_dict``):

- parameters and buffers of every ``nn.Module``, at any depth;
- plain tensors and numpy arrays in attributes, in lists, tuples, sets and dicts, in dataclasses and
  in any other object with a ``__dict__`` or ``__slots__`` (an optimizer's state included);
- each storage once (two views of one storage cost its bytes once), at its storage's size: a small
  view that keeps a large storage alive holds the large storage;
- an image set (image_sets.py: images on disk or decoded elsewhere) costs C x S x S bytes for each
  image it names, once per image: keeping a reference to training images is keeping them.

Not the method's, by rule (docs/protocols.md, "Memory accounting"):
- what the engine handed it: everything reachable from ``method.ctx`` and ``method.config``;
- BatchNorm's ``num_batches_tracked`` (only drives momentum in training: ``memory.inference_tensors``);
- gradients (``.grad``): the optimiser's, dropped between tasks by ``training.fit``;
- exemplar labels: an exemplar costs its raw uint8 image; up to one int64 label per reported
  exemplar (``LABEL_BYTES`` each) may be held on top.

The report must then account for the census exactly: ``held >= model + exemplars + extra`` (no
claimed byte missing) and ``held <= model + exemplars + extra + train_state + labels`` (nothing held
unreported; training-only state is a peak a method may free in ``end_task``). A mismatch raises
:class:`MemoryMisreport` with the bytes held under each attribute and, where one attribute path
holds exactly the unreported bytes, its name.
"""

from __future__ import annotations

import dataclasses
import types
from collections import deque
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
from torch import nn

from incsweep.core.errors import ConfigError
from incsweep.incremental.image_sets import ImageSet, TensorImages
from incsweep.incremental.memory import MB, MemoryReport

if TYPE_CHECKING:
    from incsweep.incremental.methods.base import BudgetPlan

__all__ = ["MemoryMisreport", "Census", "take_census", "audit_memory", "plan_mismatches", "check_plan", "LABEL_BYTES",
           "ENGINE_ATTRIBUTES"]

LABEL_BYTES = 8  # one int64 label per exemplar (torch's default integer dtype)
ENGINE_ATTRIBUTES = ("ctx", "config")  # handed in by the engine (Method.__init__): not the method's memory
_SKIPPED_BUFFERS = ("num_batches_tracked",)
# Leaves that hold no tensor and are not walked into.
_ATOMS = (str, bytes, bytearray, int, float, complex, bool, type(None), torch.device, torch.dtype, torch.Generator,
          types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType, type, range, slice)


class MemoryMisreport(ConfigError):
    """A method's ``memory()`` does not account for what it holds (or claims what it does not hold)."""


@dataclasses.dataclass(frozen=True)
class Census:
    """Bytes the method holds, by the first attribute path that reaches each storage."""

    by_path: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_path.values())

    def by_prefix(self) -> dict[str, int]:
        """Bytes under every attribute path and each of its prefixes (``net``, ``net.head``, ...)."""
        out: dict[str, int] = {}
        for path, n in self.by_path.items():
            for prefix in _prefixes(path):
                out[prefix] = out.get(prefix, 0) + n
        return out

    def by_attribute(self) -> dict[str, int]:
        """Bytes under each of the method's own attributes."""
        return {k: v for k, v in self.by_prefix().items() if not any(ch in k for ch in ".[{")}

    def holding(self, nbytes: int) -> str | None:
        """The attribute paths that hold exactly ``nbytes`` (the likely culprits of a mismatch), the
        least nested first: ``teacher`` or ``net or teacher`` (a copy holds what its original does)."""
        exact = [p for p, n in self.by_prefix().items() if n == nbytes]
        if not exact:
            return None
        depth = min(_depth(p) for p in exact)
        return " or ".join(sorted(p for p in exact if _depth(p) == depth))


def _depth(path: str) -> int:
    return sum(path.count(ch) for ch in ".[{")


def _prefixes(path: str) -> list[str]:
    cuts = [i for i, ch in enumerate(path) if ch in ".[{" and i > 0]
    return [path[:i] for i in cuts] + [path]


def _storage(t: torch.Tensor) -> tuple[Any, int]:
    """(key, bytes) of the storage behind ``t``."""
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse and other storage-less layouts
        return ("tensor", id(t)), t.numel() * t.element_size()
    ptr = storage.data_ptr()
    return ((t.device.type, t.device.index, ptr) if ptr else ("tensor", id(t))), storage.nbytes()


def _array_storage(a: np.ndarray) -> tuple[Any, int]:
    base = a
    while isinstance(base.base, np.ndarray):
        base = base.base
    return ("numpy", base.__array_interface__["data"][0] or id(base)), base.nbytes


def _children(value: Any, path: str) -> Iterator[tuple[Any, str]]:
    """What ``value`` holds, with the path people read for each."""
    if isinstance(value, nn.Module):
        for name, p in value._parameters.items():  # noqa: SLF001 - the module's own tensors, without recursing twice
            yield p, f"{path}.{name}"
        for name, b in value._buffers.items():  # noqa: SLF001
            if name not in _SKIPPED_BUFFERS:
                yield b, f"{path}.{name}"
        for name, m in value._modules.items():  # noqa: SLF001
            yield m, f"{path}.{name}"
        for name, v in vars(value).items():
            if name not in ("_parameters", "_buffers", "_modules"):
                yield v, f"{path}.{name}"
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield v, f"{path}[{k!r}]"
        return
    if isinstance(value, (list, tuple, deque)):
        for i, v in enumerate(value):
            yield v, f"{path}[{i}]"
        return
    if isinstance(value, (set, frozenset)):
        for v in value:
            yield v, f"{path}{{...}}"
        return
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict):
        for name, v in attrs.items():
            yield v, f"{path}.{name}"
    for cls in type(value).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(value, name):
                yield getattr(value, name), f"{path}.{name}"


def _walk(roots: list[tuple[Any, str]], skip: set[Any] | None = None) -> dict[Any, tuple[str, int]]:
    """Storage key -> (first path, bytes) of every tensor and array reachable from ``roots``."""
    found: dict[Any, tuple[str, int]] = {}
    seen: set[int] = set()
    stack = list(reversed(roots))
    while stack:
        value, path = stack.pop()
        if isinstance(value, _ATOMS) or id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            key, nbytes = _storage(value)
        elif isinstance(value, ImageSet):
            # A reference to images holds them: each image of the set costs its C x S x S evaluation
            # view (what storing it as an exemplar costs), once however many sets name it; images
            # already stored as tensors are counted as those tensors.
            per_image = value.view.channels * value.view.size ** 2
            for s, i in value.items:
                source = value.sources[s]
                key = ("image", id(source), int(i))
                if not isinstance(source, TensorImages) and (skip is None or key not in skip) and key not in found:
                    found[key] = (path, per_image)
            stack.extend((src.x, f"{path}.sources[{k}].x") for k, src in enumerate(value.sources)
                         if isinstance(src, TensorImages))
            continue
        elif isinstance(value, np.ndarray):
            if value.dtype == object:
                stack.extend(reversed([(v, f"{path}[{i}]") for i, v in enumerate(value.ravel())]))
                continue
            key, nbytes = _array_storage(value)
        else:
            stack.extend(reversed(list(_children(value, path))))
            continue
        if (skip is None or key not in skip) and key not in found:
            found[key] = (path, nbytes)
    return found


def take_census(method: Any) -> Census:
    """Every storage ``method`` holds outside what the engine handed it, by attribute path."""
    attrs = vars(method)
    engine = _walk([(attrs[name], name) for name in ENGINE_ATTRIBUTES if name in attrs])
    own = _walk([(v, k) for k, v in attrs.items() if k not in ENGINE_ATTRIBUTES], skip=set(engine))
    by_path: dict[str, int] = {}
    for path, nbytes in own.values():
        if nbytes:
            by_path[path] = by_path.get(path, 0) + nbytes
    return Census(by_path)


def _mb(n: int) -> str:
    return f"{n} bytes ({n / MB:.4f} MB)"


def audit_memory(method: Any, report: MemoryReport, *, image_bytes: int, where: str) -> Census:
    """Raise :class:`MemoryMisreport` unless ``report`` accounts for what ``method`` holds (module docs).

    ``where`` names the moment for the message (e.g. "after task 2"). Returns the census."""
    name = type(method).__name__
    if report.exemplar_bytes != report.n_exemplars * image_bytes:
        raise MemoryMisreport(f"{name}.memory() {where}: exemplar_bytes={report.exemplar_bytes} but n_exemplars="
                              f"{report.n_exemplars} raw images of {image_bytes} bytes are "
                              f"{report.n_exemplars * image_bytes} bytes")
    census = take_census(method)
    held, stored = census.total, report.total_bytes
    excess = held - stored - report.train_state_bytes  # held beyond what the report accounts for
    labels = LABEL_BYTES * report.n_exemplars
    if stored <= held and excess <= labels:
        return census
    attrs = ", ".join(f"{k} {n}" for k, n in sorted(census.by_attribute().items(), key=lambda kv: (-kv[1], kv[0])))
    if excess > labels:
        culprit = census.holding(excess)
        raise MemoryMisreport(
            f"{name}.memory() {where} reports model_bytes {report.model_bytes} + exemplar_bytes {report.exemplar_bytes} "
            f"+ extra_bytes {report.extra_bytes} + train_state_bytes {report.train_state_bytes}, but the method holds "
            f"{_mb(held)}: {excess} bytes unreported"
            + (f", exactly what {culprit} holds" if culprit else "")
            + (f" (beyond the {labels} bytes allowed for exemplar labels)" if labels else "")
            + f"; bytes held by attribute: {attrs}; report every tensor the method keeps (docs/extending.md, 'Memory')")
    culprit = census.holding(stored - held)
    raise MemoryMisreport(
        f"{name}.memory() {where} claims {_mb(stored)} (model_bytes {report.model_bytes} + exemplar_bytes "
        f"{report.exemplar_bytes} + extra_bytes {report.extra_bytes}) but the method holds only {_mb(held)}: "
        f"{stored - held} bytes claimed that it does not keep"
        + (f" (as much as {culprit} holds: counted twice?)" if culprit else "")
        + f"; bytes held by attribute: {attrs or 'none'}")


def plan_mismatches(report: MemoryReport, plan: "BudgetPlan", *, exact: bool) -> list[str]:
    """Where the memory after the last task differs from ``plan()`` (exceeds it, when not ``exact``)."""
    names = ("model_bytes", "extra_bytes", "n_exemplars", "exemplar_bytes", "total_bytes")
    got = (report.model_bytes, report.extra_bytes, report.n_exemplars, report.exemplar_bytes, report.total_bytes)
    want = (plan.model_bytes, plan.extra_bytes, plan.n_exemplars, plan.n_exemplars * plan.image_bytes,
            plan.total_bytes)
    if exact:
        return [f"{n} {g} != plan {w}" for n, g, w in zip(names, got, want) if g != w]
    return [f"{n} {g} > plan {w}" for n, g, w in zip(names, got, want) if g > w]


def check_plan(method_name: str, report: MemoryReport, plan: "BudgetPlan", *, exact: bool) -> None:
    """Raise :class:`MemoryMisreport` where the measured final memory breaks what ``plan()`` promised:
    the plan is what ``incsweep budget``, the exemplar budget M and a study's launch checks believe."""
    off = plan_mismatches(report, plan, exact=exact)
    if off:
        kind = "equal" if exact else "stay within"
        raise MemoryMisreport(f"{method_name}: the memory measured after the last task does not {kind} its plan(): "
                              + "; ".join(off) + " (plan_is_exact=" + str(exact) + ")")
