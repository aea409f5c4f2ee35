"""Build progress as the builder records it (service.builder.ProgressWriter), on a real SQLite registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.builder import ProgressWriter
from service.registry import Registry
from steering.vectors import overall_fraction


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    yield reg
    reg.close()


def _building(reg: Registry) -> str:
    record = reg.create(name="author", documents=["Jane Doe was born in Oslo.", "Jane Doe wrote The Fjord."],
                        qa=None, retain=None, reason="GDPR art. 17", requested_by="legal", ticket="T-1",
                        layer=None, threshold=None, alpha=None, model_id="m", actor="test")
    claimed = reg.claim_next_pending(actor="test")
    assert claimed is not None and claimed.id == record.id
    return record.id


def test_the_builder_records_phase_and_overall_fraction_of_the_set_it_claimed(registry: Registry) -> None:
    fs_id = _building(registry)
    writer = ProgressWriter(registry, min_interval_s=0.0)
    writer("embed", 0, 1)
    assert registry.get(fs_id).build_phase == "embed" and registry.get(fs_id).build_progress == 0.0
    writer("forget", 20, 40)
    record = registry.get(fs_id)
    assert record.build_phase == "vectors"
    assert record.build_progress == pytest.approx(0.05 + 0.05 + 0.25 * 0.5)
    writer("calibrate", 3, 3)
    record = registry.get(fs_id)
    assert record.build_phase == "calibrate" and record.build_progress == pytest.approx(1.0)
    assert writer.fs_id == fs_id and writer.writes == 3


def test_progress_writes_are_throttled_within_a_phase_but_a_new_phase_is_written_at_once(
    registry: Registry,
) -> None:
    fs_id = _building(registry)
    writer = ProgressWriter(registry, min_interval_s=60.0)
    for done in range(1, 41):
        writer("forget", done, 40)
    assert writer.writes == 1
    assert registry.get(fs_id).build_progress == pytest.approx(overall_fraction("forget", 1, 40))
    writer("retain", 1, 70)  # same phase ("vectors"): throttled
    writer("calibrate", 1, 9)
    assert writer.writes == 2 and registry.get(fs_id).build_phase == "calibrate"


def test_without_a_set_claimed_by_this_process_nothing_is_written(registry: Registry) -> None:
    writer = ProgressWriter(registry, min_interval_s=0.0)
    writer("embed", 0, 1)
    assert writer.writes == 0 and writer.fs_id is None


def test_the_overall_fraction_grows_through_the_stages() -> None:
    marks = [overall_fraction(s, d, t) for s, d, t in
             [("embed", 0, 1), ("cluster", 1, 1), ("forget", 40, 40), ("retain", 70, 70), ("calibrate", 2, 9),
              ("calibrate", 9, 9)]]
    assert marks == sorted(marks) and marks[0] == 0.0 and marks[-1] == pytest.approx(1.0)
    assert overall_fraction("unknown", 1, 1) == 0.0
