"""The lab's HTML report: one self-contained file read back from a study's store.

``weightlab report STORE -o report.html`` or :func:`write_report` writes it;
``docs/report.md`` says what each section shows and how to read it. The
numbers come from :func:`analyze` (:mod:`weightlab.report.analysis`, plain
data); :func:`build_context` and :func:`render_html`
(:mod:`weightlab.report.render`) lay them out as figures, tables and HTML.

Example:
    >>> from weightlab.lab.store import MemoryStore
    >>> html = render_report(MemoryStore())
    >>> "<!DOCTYPE html>" in html and "No trial failed" in html
    True
"""

from weightlab.report.analysis import ReportAnalysis, analyze
from weightlab.report.render import build_context, render_html, render_report, write_report

__all__ = [
    "ReportAnalysis",
    "analyze",
    "build_context",
    "render_html",
    "render_report",
    "write_report",
]
