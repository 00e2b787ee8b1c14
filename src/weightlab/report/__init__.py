"""The lab's HTML report: one self-contained file read back from a study's store.

``weightlab report STORE -o report.html`` or :func:`write_report` writes it;
``docs/report.md`` says what each section shows and how to read it.

Example:
    >>> from weightlab.lab.store import MemoryStore
    >>> html = render_report(MemoryStore())
    >>> "<!DOCTYPE html>" in html and "No trial failed" in html
    True
"""

from weightlab.report.render import build_context, render_html, render_report, write_report

__all__ = ["build_context", "render_html", "render_report", "write_report"]
