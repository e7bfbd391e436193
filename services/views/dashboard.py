"""``stancestream dashboard``: a read-only local web page with the charts analysts look at.

One HTML page (inline SVG drawn by a few lines of JavaScript: no CDN, works offline) polls ``/api/data``, which
runs four fixed SELECTs (``shared.store.queries.monitoring.dashboard_data``) over the last ``days`` days: stance share per language per day, volume per language,
the confidence distribution and the adapter versions timeline. Every chart element carries its numbers as
``data-*`` attributes, so a test (and a curious user) can read exactly what was drawn.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.store.base import Store
from shared.store.queries.monitoring import dashboard_data

log = logging.getLogger(__name__)


def serve_dashboard(store: Store, host: str, port: int, days: int, refresh_s: int) -> None:
    server = make_server(store, host, port, days, refresh_s)
    print(f"dashboard on http://{host}:{server.server_address[1]}/  (read-only; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def make_server(store: Store, host: str, port: int, days: int, refresh_s: int) -> ThreadingHTTPServer:
    page = PAGE.replace("__REFRESH_MS__", str(refresh_s * 1000))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", page.encode())
            elif self.path == "/api/data":
                try:
                    body, status = json.dumps(dashboard_data(store, days), ensure_ascii=False).encode(), 200
                except Exception as exc:  # the page shows the error instead of stale charts
                    log.warning("dashboard query failed: %s", exc)
                    body, status = json.dumps({"error": str(exc)}).encode(), 500
                self._send(status, "application/json", body)
            else:
                self.send_error(404)

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stancestream</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 20px; color: #222; background: #fafafa; }
 h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 18px 0 6px; }
 .grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
 .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; }
 .muted { color: #777; } .legend span { margin-right: 12px; } svg text { font-size: 11px; fill: #444; }
 #error { color: #b00; }
</style></head>
<body>
<h1>stancestream</h1>
<div class="muted">stance towards immigration, live; refreshed every __REFRESH_MS__ ms — <span id="updated">loading…</span>
 <span id="error"></span></div>
<div class="card"><h2>Stance share over time, per language (immigration-related tweets)</h2>
 <div class="legend"><span style="color:#2a9d8f">■ pro</span><span style="color:#e76f51">■ anti</span>
 <span style="color:#8d99ae">■ neutral</span></div><div id="stance"></div></div>
<div class="grid">
 <div class="card"><h2>Volume per language</h2><svg id="volume" width="520" height="260"></svg></div>
 <div class="card"><h2>Confidence distribution (top-class probability)</h2><svg id="confidence" width="520" height="260"></svg></div>
</div>
<div class="card"><h2>Adapter versions</h2><svg id="adapters" width="1100" height="120"></svg></div>
<script>
const NS = "http://www.w3.org/2000/svg", COLORS = {pro: "#2a9d8f", anti: "#e76f51", neutral: "#8d99ae"};
function el(name, attrs, parent, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  parent.appendChild(e); return e;
}
function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }
function stanceCharts(stance) {
  const box = document.getElementById("stance"); box.innerHTML = "";
  for (const [lang, days] of Object.entries(stance)) {
    const w = 370, h = 170, pad = 30;
    const svg = el("svg", {width: w, height: h, class: "stance-chart", "data-lang": lang}, box);
    el("text", {x: pad, y: 14}, svg, lang + " (" + days.reduce((a, d) => a + d.n, 0) + " tweets)");
    const x = i => pad + (days.length > 1 ? i * (w - 2 * pad) / (days.length - 1) : (w - 2 * pad) / 2);
    const y = v => h - pad - v * (h - 2 * pad - 10);
    el("line", {x1: pad, y1: y(0), x2: w - pad, y2: y(0), stroke: "#ccc"}, svg);
    el("text", {x: 2, y: y(1) + 4}, svg, "100%"); el("text", {x: 8, y: y(0) + 4}, svg, "0%");
    for (const stanceName of ["pro", "anti", "neutral"]) {
      const pts = days.map((d, i) => x(i) + "," + y(d[stanceName])).join(" ");
      el("polyline", {points: pts, fill: "none", stroke: COLORS[stanceName], "stroke-width": 2}, svg);
      days.forEach((d, i) => el("circle", {cx: x(i), cy: y(d[stanceName]), r: 3, fill: COLORS[stanceName],
        class: "point", "data-lang": lang, "data-day": d.day, "data-stance": stanceName, "data-value": d[stanceName]}, svg));
    }
    days.forEach((d, i) => { if (i === 0 || i === days.length - 1)
      el("text", {x: x(i), y: h - 8, "text-anchor": days.length > 1 && i === days.length - 1 ? "end" : "middle"}, svg, d.day); });
  }
}
function bars(id, rows, label, value, cls) {
  const svg = document.getElementById(id); clear(svg);
  const w = +svg.getAttribute("width"), h = +svg.getAttribute("height"), pad = 30;
  const max = Math.max(1, ...rows.map(r => r[value])), bw = (w - 2 * pad) / Math.max(1, rows.length);
  rows.forEach((r, i) => {
    const bh = (h - 2 * pad) * r[value] / max;
    el("rect", {x: pad + i * bw + 2, y: h - pad - bh, width: Math.max(1, bw - 4), height: bh, fill: "#4477aa",
      class: cls, "data-key": r[label], "data-value": r[value]}, svg);
    el("text", {x: pad + i * bw + 2, y: h - pad + 14}, svg, String(r[label]));
    el("text", {x: pad + i * bw + 2, y: h - pad - bh - 3}, svg, String(r[value]));
  });
}
function timeline(adapters) {
  const svg = document.getElementById("adapters"); clear(svg);
  if (!adapters.length) { el("text", {x: 10, y: 20}, svg, "no adapters registered yet"); return; }
  const t = s => Date.parse(s.replace(" ", "T") + "Z"), start = Math.min(...adapters.map(a => t(a.created_at)));
  const end = Math.max(Date.now(), ...adapters.map(a => t(a.updated_at))), w = 1100, pad = 80;
  const x = v => pad + (w - 2 * pad) * (v - start) / Math.max(1, end - start);
  const color = {active: "#2a9d8f", retired: "#8d99ae", rejected: "#e76f51", candidate: "#e9c46a"};
  adapters.forEach((a, i) => {
    const y = 10 + i * 22, stop = a.status === "active" ? end : t(a.updated_at);
    el("text", {x: 4, y: y + 12}, svg, a.version + " · " + a.status);
    el("rect", {x: x(t(a.created_at)), y: y, width: Math.max(3, x(stop) - x(t(a.created_at))), height: 14,
      fill: color[a.status] || "#999", class: "adapter", "data-version": a.version, "data-status": a.status}, svg);
  });
  svg.setAttribute("height", 20 + adapters.length * 22);
}
async function refresh() {
  try {
    const response = await fetch("/api/data", {cache: "no-store"});
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    stanceCharts(data.stance);
    bars("volume", data.volume, "lang", "tweets", "volume-bar");
    bars("confidence", data.confidence, "bin", "tweets", "confidence-bar");
    timeline(data.adapters);
    document.getElementById("error").textContent = "";
    const updated = document.getElementById("updated");
    updated.textContent = "updated " + new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC";
    updated.setAttribute("data-ready", "1");
  } catch (e) { document.getElementById("error").textContent = "data unavailable: " + e.message; }
}
refresh(); setInterval(refresh, __REFRESH_MS__);
</script></body></html>
"""
