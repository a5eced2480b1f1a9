"""Training says how far it is inside a task (epochs, batches) to whoever opened a sink, at most
every few seconds, and to nobody otherwise."""

from __future__ import annotations

import torch

from incsweep.incremental.augment import AugmentConfig, Augmenter
from incsweep.incremental.heartbeat import Beat, heartbeat_to, read_beat, write_beat
from incsweep.incremental.training import Schedule, fit


def _fit(epochs: int = 3, n: int = 40, batch_size: int = 16) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    x = torch.randint(0, 255, (n, 3, 4, 4), dtype=torch.uint8)
    y = torch.randint(0, 2, (n,))
    aug = Augmenter(AugmentConfig(), (0.5,) * 3, (0.25,) * 3, torch.device("cpu"))
    fit(net.parameters(), lambda xb, yb: torch.nn.functional.cross_entropy(net(xb), yb), x, y,
        Schedule(epochs=epochs, lr=0.1, batch_size=batch_size), aug, torch.Generator().manual_seed(0),
        label="test task 1")


def test_fit_reports_every_epoch_and_batch_to_an_open_sink_only():
    beats: list[Beat] = []
    with heartbeat_to(beats.append, every_s=0):
        _fit()
    assert [(b.epoch, b.batch) for b in beats] == [(e, k) for e in (1, 2, 3) for k in (1, 2, 3)]
    assert {(b.epochs, b.batches, b.label) for b in beats} == {(3, 3, "test task 1")}
    after: list[Beat] = []
    with heartbeat_to(after.append, every_s=3600):  # throttled: the first beat only
        _fit()
    assert [(b.epoch, b.batch) for b in after] == [(1, 1)]
    _fit()  # no sink: nothing (the block's sink is gone after it)
    assert len(beats) == 9 and len(after) == 1


def test_a_beat_file_is_written_whole_and_read_back(tmp_path):
    path = tmp_path / "hb" / "t1.json"
    with heartbeat_to(write_beat(path), every_s=0):
        _fit(epochs=2)
    last = read_beat(path)
    assert (last.epoch, last.epochs, last.batch, last.batches) == (2, 2, 3, 3)
    assert read_beat(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_beat(tmp_path / "bad.json") is None
    assert sorted(p.name for p in path.parent.iterdir()) == ["t1.json"]  # no temporary file left
