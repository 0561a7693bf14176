"""Stopping a fit part-way, as a crash would, for the checkpoint and resume tests."""

from npclust.cluster.training import Progress


class Interrupted(Exception):
    pass


def interrupt_after(monkeypatch, n_records):
    """Make training stop after ``n_records`` progress records, before the checkpoint of
    the unit that made the last one is written."""
    original = Progress.record
    calls = {"n": 0}

    def record(self, *args, **kwargs):
        entry = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == n_records:
            raise Interrupted
        return entry

    monkeypatch.setattr(Progress, "record", record)
