"""The view's HTML form: one output that is the run's static report everywhere and the
interactive view wherever the page runs scripts.

A notebook reopened without the kernel that made a widget cannot show it (JupyterLab says
"model not found"), so a view kept in a notebook is HTML. That HTML holds the report (the
DAG, totals, a row per stage), which needs no kernel, no widget and no script; and the
view's state with a small module script. Where scripts run (the notebook that made it, a
trusted notebook, an HTML export), the script mounts the same view (``widget.js``) in
place of the report: on the view's live model while the kernel that made it has one (so
Run, Retry and Cancel work, and it follows runs), else on the state saved in the output,
with the zoom, scroll, tab and stage chosen that the user had.
"""

from __future__ import annotations

import base64
import html
import json
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

# Runs where the page runs scripts; ``ID``, ``VIEW``, ``CSS`` and ``ESM`` are filled in. The
# module is loaded from a Blob: the output is its only copy, so it works offline and in
# an HTML export.
MOUNT = """
const holder = document.getElementById("pydags-final-ID");
if (holder && !holder.dataset.mounted) {
  holder.dataset.mounted = "1";
  const state = JSON.parse(document.getElementById("pydags-state-ID").textContent);
  for (const info of Object.values(state.items || {})) {
    const bytes = Uint8Array.from(atob(info.seconds), (c) => c.charCodeAt(0));
    info.seconds = new DataView(bytes.buffer);
  }
  const code = URL.createObjectURL(new Blob([ESM], { type: "text/javascript" }));
  const { mountFinal } = await import(code);
  const style = document.createElement("style");
  style.textContent = CSS;
  holder.before(style);
  mountFinal(holder, { get: (key) => state[key], on() {}, off() {}, send() {} }, VIEW);
}
"""


def final_html(report: str, state: dict[str, Any], view_id: str) -> str:
    """``report`` (static HTML), and the view's ``state`` for the script that mounts it."""
    state = {**state, "actions": False, "blocking": False,
             "state": "idle" if state.get("state") == "idle" else "finished",
             "items": {name: {**info, "seconds": base64.b64encode(info["seconds"]).decode()}
                       for name, info in state.get("items", {}).items()}}
    output = f"{view_id}-{uuid.uuid4().hex[:8]}"  # this output's: a view may show twice
    script = (MOUNT.replace("ID", output).replace("VIEW", _literal(view_id))
              .replace("CSS", _literal((HERE / "widget.css").read_text()))
              .replace("ESM", _literal((HERE / "widget.js").read_text())))
    return (f'<div id="pydags-final-{html.escape(output)}">{report}</div>'
            f'<script type="application/json" id="pydags-state-{html.escape(output)}">'
            f"{_literal(state)}</script>"
            f'<script type="module">{script}</script>')


def _literal(value: Any) -> str:
    """JSON that stays inside a ``<script>``: no ``</`` to end it early."""
    return json.dumps(value).replace("</", "<\\/")
