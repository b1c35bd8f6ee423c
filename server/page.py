"""The live status page at /: plain HTML, a stylesheet and a little script that polls
GET /status every second and redraws. No build step, nothing from other sites (the
Content-Security-Policy allows only this server), and every text from the database is
set as text (`textContent`), never as markup.

With a token on the server, the page asks for it once (or takes it from `/#token=...`)
and keeps it in the tab's sessionStorage; the fragment is never sent to the server.
"""

from __future__ import annotations

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ocrq status</title>
<link rel="stylesheet" href="/static/status.css">
<script src="/static/status.js" defer></script>
</head>
<body>
<header>
  <h1>ocrq</h1>
  <span id="mode" class="muted">connecting…</span>
  <span id="updated" class="muted right"></span>
</header>
<div id="problem" class="banner" hidden></div>
<form id="login" class="banner" hidden>
  <label>This server needs its API token:
    <input id="token" type="password" autocomplete="off" size="40"></label>
  <button type="submit">Show status</button>
</form>
<main>
  <section class="tiles" id="tiles"></section>
  <section>
    <h2>Workers</h2>
    <table id="workers"><thead><tr><th>worker</th><th>state</th><th>job</th>
      <th>for</th><th>pages (5 min)</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Batches</h2>
    <div id="batches"><p class="muted">No batch yet.</p></div>
  </section>
  <section>
    <h2>Failures</h2>
    <table id="failures"><thead><tr><th>job</th><th>document</th><th>page</th>
      <th>reason</th></tr></thead><tbody></tbody></table>
    <p id="no-failures" class="muted">No failed page.</p>
  </section>
</main>
</body>
</html>
"""

STYLE = """
:root { --ok: #2e7d32; --bad: #c62828; --run: #1565c0; --line: #ddd; --muted: #666; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { display: flex; gap: 1em; align-items: baseline; padding: .6em 1.2em;
  background: #263238; color: #fff; }
header h1 { margin: 0; font-size: 1.3em; }
header .muted { color: #b0bec5; }
.right { margin-left: auto; }
main { padding: 0 1.2em 2em; max-width: 1100px; }
h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
.muted { color: var(--muted); }
.banner { margin: .8em 1.2em; padding: .6em 1em; background: #fff3e0;
  border: 1px solid #ffb74d; }
.tiles { display: flex; flex-wrap: wrap; gap: .6em; margin-top: 1em; }
.tile { background: #fff; border: 1px solid var(--line); padding: .5em .9em; min-width: 8em; }
.tile b { display: block; font-size: 1.4em; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: .9em; }
.batch { background: #fff; border: 1px solid var(--line); margin-bottom: .8em; }
.batch-head { display: flex; gap: 1em; align-items: center; padding: .4em .6em;
  border-bottom: 1px solid var(--line); }
.batch-head .bar { flex: 1; }
.doc { display: grid; grid-template-columns: minmax(10em, 2fr) 3fr 7em 6em; gap: .8em;
  align-items: center; padding: .25em .6em; }
.name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.bar { height: .8em; background: #eceff1; display: flex; overflow: hidden; }
.bar .done { background: var(--ok); }
.bar .failed { background: var(--bad); }
.bar .running { background: var(--run); opacity: .5; }
.badge { display: inline-block; padding: 0 .5em; border-radius: .7em; font-size: .85em;
  background: #eceff1; }
.badge.done, .badge.idle { background: #e8f5e9; color: var(--ok); }
.badge.failed, .badge.down { background: #ffebee; color: var(--bad); }
.badge.partial { background: #fff3e0; color: #e65100; }
.badge.open, .badge.busy, .badge.starting { background: #e3f2fd; color: var(--run); }
.reason { font-family: ui-monospace, monospace; font-size: .9em; color: var(--bad);
  word-break: break-word; }
"""

SCRIPT = r"""
"use strict";
(function () {
  const POLL_MS = 1000;
  const KEY = "ocrq-token";
  let timer = null;

  const m = /[#&]token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function bar(total, done, failed, running) {
    const pct = (n) => (total ? (100 * n) / total : 0).toFixed(2) + "%";
    return el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0",
                       "aria-valuemax": String(total), "aria-valuenow": String(done + failed) },
      el("span", { class: "done", style: "width:" + pct(done) }),
      el("span", { class: "failed", style: "width:" + pct(failed) }),
      el("span", { class: "running", style: "width:" + pct(running || 0) }));
  }

  function seconds(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
    return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  }

  function tile(label, value, id) {
    return el("div", { class: "tile", id: id }, el("b", {}, value), label);
  }

  function render(data) {
    document.getElementById("mode").textContent = data.server;
    document.getElementById("updated").textContent =
      "updated " + new Date(data.time * 1000).toLocaleTimeString();
    const problem = document.getElementById("problem");
    problem.hidden = !data.problem;
    problem.textContent = data.problem ? "Jobs cannot run: " + data.problem : "";

    const j = data.jobs;
    document.getElementById("tiles").replaceChildren(
      tile("pages/s (last min)", data.pages_per_second.toFixed(2), "tile-rate"),
      tile("waiting for a worker", data.queue_depth === null ? "?" : data.queue_depth, "tile-depth"),
      tile("running", j.running, "tile-running"),
      tile("done", j.done + j.duplicate, "tile-done"),
      tile("failed", j.failed, "tile-failed"),
      tile("/infer held open", data.infer_waiting + " / " + data.infer_limit, "tile-infer"));

    const workers = data.workers.map((w) => el("tr", { "data-worker": w.name },
      el("td", {}, w.name, w.core !== null && w.core !== undefined ? " (core " + w.core + ")" : ""),
      el("td", {}, el("span", { class: "badge " + w.state }, w.state)),
      el("td", { class: "name" }, w.job ? (w.job.name ? w.job.name + " p." + w.job.page
                                                       : "job " + w.job.id) : ""),
      el("td", {}, w.state === "busy" ? seconds(w.busy_seconds) : ""),
      el("td", {}, w.pages_recent)));
    document.querySelector("#workers tbody").replaceChildren(...workers);

    const batches = data.batches.map((b) => {
      const docs = b.document_list.map((d) => el("div", { class: "doc", "data-doc-id": d.id },
        el("span", { class: "name", title: d.name }, d.name),
        bar(d.pages, d.done, d.failed, d.running),
        el("span", { class: "pages" }, d.done + d.failed + " / " + d.pages + " pages"),
        el("span", {}, el("span", { class: "badge doc-status " + d.status }, d.status))));
      const rate = b.pages_per_second ? b.pages_per_second.toFixed(2) + " pages/s" : "";
      return el("div", { class: "batch", "data-batch-id": b.id },
        el("div", { class: "batch-head" },
          el("b", {}, "batch " + b.id),
          el("span", { class: "muted" }, b.source),
          el("span", {}, b.documents + " documents"),
          bar(b.pages, b.done, b.failed, 0),
          el("span", {}, b.done + b.failed + " / " + b.pages + " pages" +
                         (b.failed ? " (" + b.failed + " failed)" : "")),
          el("span", { class: "muted" }, rate)),
        ...docs);
    });
    const holder = document.getElementById("batches");
    if (batches.length) holder.replaceChildren(...batches);

    const failures = data.failures.map((f) => el("tr", { "data-job-id": f.job_id },
      el("td", {}, f.job_id), el("td", { class: "name" }, f.name), el("td", {}, f.page),
      el("td", { class: "reason failure-reason" }, f.reason)));
    document.querySelector("#failures tbody").replaceChildren(...failures);
    document.getElementById("no-failures").hidden = failures.length > 0;
  }

  async function poll() {
    const headers = {};
    const token = sessionStorage.getItem(KEY);
    if (token) headers["Authorization"] = "Bearer " + token;
    try {
      const res = await fetch("/status", { headers: headers, cache: "no-store" });
      if (res.status === 401) {
        document.getElementById("login").hidden = false;
        document.getElementById("mode").textContent = "token needed";
        return;  // polling resumes when a token is given
      }
      document.getElementById("login").hidden = true;
      if (res.ok) render(await res.json());
      else document.getElementById("mode").textContent = "status answered " + res.status;
    } catch (err) {
      document.getElementById("mode").textContent = "server unreachable, retrying";
    }
    timer = setTimeout(poll, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("login").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, document.getElementById("token").value.trim());
      clearTimeout(timer);
      poll();
    });
    poll();
  });
})();
"""
