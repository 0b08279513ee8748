"""Fixtures of the report tests: one full store (every analysis) per session."""

from __future__ import annotations

import pytest

from report_helpers import make_full_store


@pytest.fixture(scope="session")
def full_store(tmp_path_factory):
    return make_full_store(tmp_path_factory.mktemp("report-full") / "store")


@pytest.fixture(scope="session")
def full_report(full_store, tmp_path_factory):
    from neurofeat.runs.report import report_run

    return report_run(full_store, tmp_path_factory.mktemp("report-out") / "report.html")
