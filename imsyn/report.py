"""``report.html`` of a workdir: config, loss plots, latest samples, eval metrics and images.

The report links the images by relative path (it lives in the workdir beside
them), so it stays small and opens from any copy of the workdir. Tasks can add
sections: ``write_report(workdir, sections=[("title", "<p>html</p>"), ...])``
(the loop passes what ``task.report_sections(config, workdir)`` returns, when a
task defines it).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from imsyn.image import write_text

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
h1{font-size:1.6em} h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f4f4f4} img{max-width:100%;image-rendering:pixelated;margin:.3em}
figure{display:inline-block;margin:.4em;vertical-align:top} figcaption{font-size:.85em;color:#555}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em} .note{color:#a15c00}
"""


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict | list):
        return html.escape(json.dumps(v))
    return html.escape(str(v))


def metrics_table(metrics: dict) -> str:
    """An HTML table of a flat metrics dict (nested values are shown as JSON)."""
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics.items()
    )
    return f"<table>{rows}</table>"


def figure(src: str, caption: str | None = None, *, width: int | None = None) -> str:
    """One ``<figure>``: the image at relative path ``src`` and its caption (HTML-escaped,
    the path itself by default)."""
    size = f' width="{width}"' if width else ""
    cap = html.escape(src if caption is None else caption)
    return (
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(src)}"{size}>'
        f"<figcaption>{cap}</figcaption></figure>"
    )


def table(header: list[str], rows: list[list]) -> str:
    """An HTML table; cells are formatted like the metrics (floats to 6 significant digits)
    unless they are already :class:`Html`."""

    def cell(v, tag):
        return f"<{tag}>{v if isinstance(v, Html) else _fmt(v)}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


class Html(str):
    """A string that is already HTML (not escaped again by :func:`table`)."""


def page(title: str, body: str) -> str:
    """A self-contained HTML page with the imsyn style (every page imsyn writes)."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def _figures(workdir: Path, paths: list[Path]) -> str:
    return "".join(figure(p.relative_to(workdir).as_posix()) for p in paths)


def render_report(workdir: str | os.PathLike, *, sections=()) -> str:
    """The report HTML of ``workdir`` (see :func:`write_report`)."""
    workdir = Path(workdir)
    config = _read_json(workdir / "config.json") or {}
    title = str(config.get("name") or workdir.name)
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>workdir: <code>{html.escape(str(workdir))}</code></p>",
    ]
    metrics = _read_json(workdir / "eval" / "metrics.json")
    if metrics:
        parts.append("<h2>Evaluation</h2>" + metrics_table(metrics))
        if metrics.get("features_note"):
            parts.append(f'<p class="note">{html.escape(str(metrics["features_note"]))}</p>')
    plots = sorted((workdir / "plots").glob("*.png"))
    if plots:
        parts.append("<h2>Losses</h2>" + _figures(workdir, plots))
    samples = sorted((workdir / "samples").glob("*_latest.png"))
    if samples:
        parts.append("<h2>Latest samples</h2>" + _figures(workdir, samples))
    evals = sorted((workdir / "eval").glob("*.png"))
    if evals:
        parts.append("<h2>Evaluation images</h2>" + _figures(workdir, evals))
    for name, body in sections:
        parts.append(f"<h2>{html.escape(name)}</h2>{body}")
    if config:
        parts.append("<h2>Config</h2><pre>" + html.escape(json.dumps(config, indent=2)) + "</pre>")
    return page(title, "".join(parts))


def write_report(workdir: str | os.PathLike, *, sections=()) -> Path:
    """Writes ``workdir/report.html`` atomically and returns its path.

    Args:
      workdir: a run directory (config.json, plots/, samples/, eval/ are used if present).
      sections: extra ``(title, html)`` pairs appended after the standard sections.
    """
    path = Path(workdir) / "report.html"
    write_text(path, render_report(workdir, sections=sections))
    return path
