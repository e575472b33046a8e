"""The live view's final form: one HTML output that is the run's static report everywhere
and the interactive view wherever the page runs scripts.

A notebook saved without a kernel cannot show a widget (JupyterLab says "model not
found"), so a run's view ends as HTML. That HTML holds the report (DAG, totals, a row per
stage), which needs no kernel, no widget and no script; and the view's last state with
a small module script. Where scripts run (the notebook that made it, a trusted notebook,
an HTML export), the script mounts the same view (``widget.js``) on that state, in place
of the report and with the zoom, scroll, tab and stage chosen that the user had: the
view stays as it was when the run ended. Only what needs the kernel (Run, Retry) is gone.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

# Runs where the page runs scripts; ``ID`` and ``ESM`` are filled in. The module is loaded
# from a Blob: the output is its only copy, so it works offline and in an HTML export.
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
  const { default: view } = await import(code);
  const style = document.createElement("style");
  style.textContent = CSS;
  const root = document.createElement("div");
  const model = { get: (key) => state[key], on() {}, off() {}, send() {} };
  view.render({ model, el: root });
  holder.style.display = "none";
  holder.before(style, root);
}
"""


def final_html(report: str, state: dict[str, Any], view_id: str) -> str:
    """``report`` (static HTML), and the view's ``state`` for the script that mounts it."""
    state = {**state, "state": "finished", "actions": False, "blocking": False,
             "items": {name: {**info, "seconds": base64.b64encode(info["seconds"]).decode()}
                       for name, info in state.get("items", {}).items()}}
    script = (MOUNT.replace("ID", view_id)
              .replace("CSS", _literal((HERE / "widget.css").read_text()))
              .replace("ESM", _literal((HERE / "widget.js").read_text())))
    return (f'<div id="pydags-final-{html.escape(view_id)}">{report}</div>'
            f'<script type="application/json" id="pydags-state-{html.escape(view_id)}">'
            f"{_literal(state)}</script>"
            f'<script type="module">{script}</script>')


def _literal(value: Any) -> str:
    """JSON that stays inside a ``<script>``: no ``</`` to end it early."""
    return json.dumps(value).replace("</", "<\\/")
