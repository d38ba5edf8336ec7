"""Human renderings of results: console tables (console.py), report.json (collect.py), and report.md /
report.html with plots (render.py: what they show; markdown.py, html.py, plots.py: how; write.py: the files).

    from mnetdeploy.report import write_report, render_markdown, render_html

The names above load their modules on first use, so importing this package (as the CLI does for console
tables) pulls in nothing heavy; matplotlib is imported only when a page with plots is rendered.
"""

from __future__ import annotations

_LAZY = {
    "write_report": "mnetdeploy.report.write",
    "render_markdown": "mnetdeploy.report.markdown",
    "render_html": "mnetdeploy.report.html",
    "write_comparison": "mnetdeploy.report.write",
    "build_report": "mnetdeploy.report.collect",
    "load_report": "mnetdeploy.report.collect",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mnetdeploy.report' has no attribute {name!r}")
