// meshsim's live traffic page: the graph the server inlined (or
// /api/graph), then Server-Sent Events from /api/events; panels from
// /api/node and /api/edge. `?live=0` shows one snapshot without updates;
// `#node=PROXY` and `#edge=SRC->DST` open a panel (links to share).
"use strict";

const colorFor = (rate) => rate >= 0.2 ? "#cf222e" : rate > 0.01 ? "#d4a72c" : "#2da44e";
const pct = (x) => Math.round(x * 100) + "%";
const codesText = (codes) => Object.entries(codes).map(([c, s]) => `${c}: ${pct(s)}`).join(", ");
const flagsText = (flags) => Object.entries(flags).map(([f, n]) => `${f} ${n}`).join(" ");

const cy = cytoscape({
  container: document.getElementById("graph"),
  wheelSensitivity: 0.3,
  style: [
    { selector: "node", style: { "label": "data(label)", "font-size": 10, "text-valign": "bottom", "text-margin-y": 3, "background-color": "#0969da", "width": 22, "height": 22 } },
    { selector: "node[kind = 'service']", style: { "background-color": "#ddf4ff", "border-color": "#0969da", "border-width": 1, "text-valign": "top", "shape": "round-rectangle" } },
    { selector: "node[kind = 'gateway']", style: { "background-color": "#8250df", "shape": "diamond" } },
    { selector: "node[kind = 'external']", style: { "background-color": "#57606a", "shape": "hexagon" } },
    { selector: "node[kind = 'outside']", style: { "background-color": "#1d2733", "shape": "triangle" } },
    { selector: "edge", style: { "label": "data(label)", "font-size": 9, "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 2, "line-color": "data(color)", "target-arrow-color": "data(color)", "text-background-color": "#fff", "text-background-opacity": 0.8 } },
    { selector: "edge[mtls = 'no']", style: { "line-style": "dashed" } },
  ],
});

let shape = "";

function edgeLabel(e) {
  const flags = flagsText(e.flags);
  return `${e.mtls ? "mTLS · " : ""}${e.rps.toFixed(1)} rps ${codesText(e.codes)}${flags ? " " + flags : ""}`;
}

function update(g) {
  document.getElementById("status").textContent = (live ? "live · " : "snapshot · ") + new Date().toISOString().slice(11, 19) + " UTC";
  document.getElementById("window").textContent = `last ${g.window_seconds} s`;
  const els = g.nodes.map((n) => ({ group: "nodes", data: { id: n.id, label: n.label, kind: n.kind, parent: n.parent, proxy: n.proxy } }))
    .concat(g.edges.map((e) => ({ group: "edges", data: { id: e.id, source: e.source, target: e.target, label: edgeLabel(e), color: colorFor(e.error_rate), mtls: e.mtls === true ? "yes" : e.mtls === false ? "no" : "unknown" } })));
  const key = g.nodes.map((n) => n.id).join("|") + "#" + g.edges.map((e) => e.id).join("|");
  if (key !== shape) {
    cy.elements().remove();
    cy.add(els);
    // Left to right, callers before callees (Kiali's default layout).
    cy.layout({ name: "dagre", rankDir: "LR", nodeSep: 25, rankSep: 90, edgeSep: 10, nodeDimensionsIncludeLabels: true, padding: 20, animate: false }).run();
    shape = key;
  } else {
    for (const el of els) cy.getElementById(el.data.id).data(el.data);
  }
  renderLists(g);
}

function renderLists(g) {
  const label = Object.fromEntries(g.nodes.map((n) => [n.id, n.label]));
  const tbody = document.querySelector("#edges tbody");
  tbody.replaceChildren(...g.edges.map((e) => {
    const tr = document.createElement("tr");
    tr.dataset.edge = e.id;
    tr.className = e.error_rate >= 0.2 ? "err" : e.error_rate > 0.01 ? "warn" : "";
    const cell = (cls, text) => { const td = document.createElement("td"); td.className = cls; td.textContent = text; return td; };
    const flags = document.createElement("td");
    flags.className = "flags";
    for (const [f, n] of Object.entries(e.flags)) {
      const s = document.createElement("span");
      s.className = "flag flag-" + f;
      s.textContent = `${f} ${n}`;
      flags.append(s);
    }
    tr.append(cell("src", label[e.source] || e.source), cell("dst", label[e.target] || e.target),
      cell("rps", e.rps.toFixed(2)), cell("codes", codesText(e.codes)), flags,
      cell("mtls", e.mtls === true ? "mTLS" : e.mtls === false ? "no" : "unseen"));
    tr.onclick = () => showEdge(e.id);
    return tr;
  }));
  const splits = document.getElementById("splits");
  splits.replaceChildren(...g.splits.map((s) => {
    const li = document.createElement("li");
    li.dataset.split = s.id;
    const conf = Object.fromEntries(s.configured.map((c) => [c.name, c.share]));
    const parts = s.observed.map((o) => `${o.name} ${pct(o.share)}` + (o.name in conf ? ` (weight ${pct(conf[o.name])})` : ""));
    const unseen = s.configured.filter((c) => !s.observed.some((o) => o.name === c.name)).map((c) => `${c.name} 0% (weight ${pct(c.share)})`);
    li.textContent = `${label[s.source] || s.source} → ${label[s.service] || s.service}: observed ${parts.concat(unseen).join(" · ")}`;
    return li;
  }));
  const nodes = document.getElementById("nodes");
  nodes.replaceChildren(...g.nodes.map((n) => {
    const li = document.createElement("li");
    li.dataset.node = n.id;
    li.dataset.kind = n.kind;
    li.textContent = `${n.label} (${n.kind})`;
    if (n.proxy) li.onclick = () => showNode(n.proxy);
    return li;
  }));
}

function side(title, ...children) {
  document.getElementById("side-title").textContent = title;
  document.getElementById("side-body").replaceChildren(...children);
}

function pre(text) { const p = document.createElement("pre"); p.textContent = text; return p; }
function h3(text) { const h = document.createElement("h3"); h.textContent = text; return h; }

function logLine(flags, line) {
  const li = document.createElement("li");
  li.className = "line";
  if (flags && flags !== "-") {
    const m = document.createElement("mark");
    m.className = "flag";
    m.textContent = flags;
    li.append(m);
  }
  li.append(line);
  return li;
}

async function showNode(proxy) {
  location.hash = "node=" + encodeURIComponent(proxy);
  const n = await (await fetch("/api/node?id=" + encodeURIComponent(proxy))).json();
  if (n.error) return side(proxy, pre(n.error));
  const tail = document.createElement("ul");
  tail.append(...n.tail.slice().reverse().map((t) => logLine(t.flags, t.line)));
  side(proxy, h3("sync: " + (n.sync || "?")), h3("access log (newest first)"), tail,
    h3("listeners"), pre(n.listeners), h3("routes"), pre(n.routes), h3("clusters"), pre(n.clusters));
}

async function showEdge(id) {
  location.hash = "edge=" + encodeURIComponent(id);
  const e = await (await fetch("/api/edge?id=" + encodeURIComponent(id))).json();
  const list = document.createElement("ul");
  list.append(...e.recent.slice().reverse().map((r) => logLine(r.flags, `${r.code} ${r.method} ${r.authority}${r.path} (${r.proxy})`)));
  const parts = [h3("last requests"), list];
  if (e.explain) parts.push(h3("meshsim explain (last failed request)"), pre(e.explain));
  side(id, ...parts);
}

cy.on("tap", "node", (ev) => { const p = ev.target.data("proxy"); if (p) showNode(p); });
cy.on("tap", "edge", (ev) => showEdge(ev.target.id()));

const live = new URLSearchParams(location.search).get("live") !== "0";
const initial = document.getElementById("initial");
if (initial) update(JSON.parse(initial.textContent));
else fetch("/api/graph").then((r) => r.json()).then(update).catch(() => {});
const opened = new URLSearchParams(location.hash.slice(1));
if (opened.get("node")) showNode(opened.get("node"));
else if (opened.get("edge")) showEdge(opened.get("edge"));
if (live) {
  const events = new EventSource("/api/events");
  events.onmessage = (ev) => update(JSON.parse(ev.data));
  events.onerror = () => { document.getElementById("status").textContent = "disconnected (retrying)"; };
}
