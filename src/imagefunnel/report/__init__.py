"""Reports: a self-contained HTML page per job."""

from imagefunnel.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
