"""The write-up's page: ``index.html`` and ``results.json``, made from the finished
experiments' state files alone (a run with nothing to do rebuilds them in seconds)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from imsyn import report
from imsyn.image import write_json, write_text
from imsyn.tasks.writeup.plan import experiments
from imsyn.tasks.writeup.records import Exp, finished, jsonable, split, state
from imsyn.tasks.writeup.sections import GROUPS, NETWORKS, QUICK_NOTES, SECTIONS


def _group(exp: Exp) -> str:
    name = exp.id.split("/")[1]
    return name.split("_")[0] if exp.section in ("a3", "a4") else name


def _figures(figs: list, width: int | None = None) -> str:
    return "".join(report.figure(src, cap, width=width) for src, cap in figs)


def _results_table(rows: dict[str, dict]) -> str:
    cols = []
    for r in rows.values():
        cols += [k for k in r if k not in cols and not isinstance(r[k], dict | list)]
    if not cols:
        return ""
    body = [[n, *(r.get(c, "") for c in cols)] for n, r in rows.items()]
    return report.table(["run", *cols], body)


def _grid_html(states: dict[str, dict], config) -> str:
    contents, styles = split(config.a4.contents), split(config.a4.styles)
    parts = []
    for init in ("noise", "content"):
        rows = []
        for c in contents:
            cells = [Path(c).stem]
            for s in styles:
                st = states.get(f"a4/grid_{init}_{Path(c).stem}_{Path(s).stem}")
                figs = st["output"]["figures"] if st else []
                cells.append(report.Html(_figures(figs, 200) if figs else "not run"))
            rows.append(cells)
        parts.append(f"<h4>from {init}</h4>" + report.table(["content \\ style", *styles], rows))
    return "".join(parts)


def write_page(config, workdir) -> dict:
    """Writes ``index.html`` and ``results.json`` from the finished experiments' records."""
    from imsyn import weights

    workdir = Path(workdir)
    exps = experiments(config)
    keys = {e.id: jsonable(e.key) for e in exps}
    states = {e.id: state(workdir, e) for e in exps if finished(workdir, e, keys[e.id])}
    results: dict[str, Any] = {"preset": config.preset, "sections": {}}
    toc, body = [], []
    for section, title in SECTIONS.items():
        anchor = section
        toc.append(f'<li><a href="#{anchor}">{html.escape(title)}</a></li>')
        parts = [f'<h2 id="{anchor}">{html.escape(title)}</h2>']
        missing = [n for n in NETWORKS.get(section, ()) if weights.cached(n) is None]
        if missing:
            parts.append(
                f'<p class="note">Pretrained network(s) not fetched: {", ".join(missing)} — '
                "the numbers of this section use the fallbacks named beside them; run "
                f"<code>python -m imsyn weights fetch {' '.join(missing)}</code> and rerun.</p>"
            )
        sec_exps = [e for e in exps if e.section == section]
        seconds = sum(states[e.id]["seconds"] for e in sec_exps if e.id in states)
        results["sections"][section] = {"seconds": seconds, "experiments": {}}
        groups: dict[str, list[Exp]] = {}
        for e in sec_exps:
            groups.setdefault(_group(e), []).append(e)
        for g, members in groups.items():
            head = GROUPS.get(g) or members[0].title
            parts.append(f"<h3>{html.escape(head)}</h3>")
            if config.preset == "quick" and g in QUICK_NOTES:
                parts.append(f'<p class="note">{html.escape(QUICK_NOTES[g])}</p>')
            rows, notes, cmds = {}, set(), []
            for e in members:
                st = states.get(e.id)
                if st is None:
                    parts.append(f'<p class="note">{html.escape(e.id)}: not run yet.</p>')
                    continue
                out = st["output"]
                results["sections"][section]["experiments"][e.id] = {
                    "results": out["results"], "seconds": st["seconds"], "command": out["command"],
                }  # fmt: skip
                for t in out["tables"]:
                    parts.append(f"<p>{html.escape(t['caption'])}</p>")
                    parts.append(report.table(t["header"], t["rows"]))
                if g != "grid":
                    parts.append(_figures(out["figures"], 256 if section == "a4" else None))
                flat = {k: v for k, v in out["results"].items() if not isinstance(v, dict)}
                if flat and not out["tables"]:
                    rows[e.id.split("/")[1]] = {**flat, "wall s": round(st["seconds"], 1)}
                notes |= set(out["notes"])
                if out["command"]:
                    cmds.append(out["command"])
            if g == "grid":
                parts.append(_grid_html(states, config))
            parts.append(_results_table(rows))
            parts += [f'<p class="note">{html.escape(n)}</p>' for n in sorted(notes) if n]
            if cmds:
                listing = html.escape("\n".join(dict.fromkeys(cmds)))
                parts.append(f"<details><summary>commands</summary><pre>{listing}</pre></details>")
        body.append("".join(parts))
    n_done = len(states)
    intro = (
        f"<h1>imsyn write-up ({html.escape(config.preset)})</h1>"
        f"<p>{n_done} of {len(exps)} experiments. Made by <code>python eval.py "
        f"--config=configs/writeup.py{':quick' if config.preset == 'quick' else ''} "
        f"--workdir={html.escape(str(workdir))}</code>; every number is in "
        '<a href="results.json">results.json</a>.</p>'
        f"<ul>{''.join(toc)}</ul>"
    )
    write_text(workdir / "index.html", report.page("imsyn write-up", intro + "".join(body)))
    results["experiments_done"] = n_done
    results["experiments_total"] = len(exps)
    write_json(workdir / "results.json", results)
    return results
