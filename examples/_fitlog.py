"""The one-line account of a fit that the example scripts print (shared by them)."""

from __future__ import annotations

from collections.abc import Sequence

from ctxmgr.report import FitReport, SegmentRecord


def fit_line(report: FitReport) -> str:
    """Return what ctxmgr kept, cleared, summarized, dropped and injected in one fit."""

    def count(records: Sequence[SegmentRecord]) -> int:
        return sum(len(r.ids) for r in records)

    injected = ", ".join(r.reason for r in report.injected) or "-"
    return (
        f"{report.tokens_before:>5} -> {report.tokens_after:>4}"
        f" tokens (limit {report.effective_limit}) | kept {report.kept_count:>2} segments,"
        f" cleared {count(report.cleared)}, summarized {count(report.summarized)},"
        f" dropped {count(report.dropped)} | injected: {injected}"
        + (f" | {report.reason}" if report.compacted else "")
    )
