// labctl dashboard: plain JS, no framework, no build step. Reads one server-sent event stream of snapshots
// (/dashboard/events) and calls the lab's API through /dashboard/call (the same routes as the CLI).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const seg = encodeURIComponent;
let snapshot = null;

// -- small DOM helpers ---------------------------------------------------------------------------------
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(cls, text, label, onClick) {
  const b = el("button", cls, text);
  b.type = "button";
  if (label) b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function setText(e, text) {
  if (e.textContent !== text) e.textContent = text;
}

// Reconcile parent's children with items by key: existing elements are updated in place (focus stays).
function keyed(parent, items, key, make, update) {
  const existing = new Map();
  for (const c of Array.from(parent.children)) if (c.dataset.key) existing.set(c.dataset.key, c);
  let prev = null;
  for (const item of items) {
    const k = key(item);
    let e = existing.get(k);
    if (e) existing.delete(k);
    else {
      e = make(item);
      e.dataset.key = k;
    }
    update(e, item);
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (e !== want) parent.insertBefore(e, want);
    prev = e;
  }
  for (const e of existing.values()) e.remove();
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${Math.max(0, Math.round(seconds))}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  return `${Math.floor(seconds / 3600)}h`;
}

function ms(v) {
  return v === null || v === undefined ? "–" : `${Math.round(v)}ms`;
}

// -- the API ---------------------------------------------------------------------------------------------
async function call(method, path, body, what) {
  const error = $("error");
  try {
    const r = await fetch("/dashboard/call", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ method, path, body: body || {} }),
      credentials: "same-origin",
    });
    let answer = {};
    try {
      answer = await r.json();
    } catch (e) {
      answer = { message: `HTTP ${r.status}` };
    }
    if (!r.ok) {
      error.textContent = answer.message || `HTTP ${r.status}`;
      error.hidden = false;
      return null;
    }
    error.hidden = true;
    error.textContent = "";
    setText($("done"), `${what}: done`);
    return answer;
  } catch (e) {
    error.textContent = `The controller did not answer: ${e}`;
    error.hidden = false;
    return null;
  }
}

// -- sparklines (inline SVG) ----------------------------------------------------------------------------------
function spark(title) {
  const s = document.createElementNS(SVG, "svg");
  s.setAttribute("class", "spark");
  s.setAttribute("viewBox", "0 0 120 30");
  s.setAttribute("preserveAspectRatio", "none");
  s.setAttribute("role", "img");
  const t = document.createElementNS(SVG, "title");
  t.textContent = title;
  s.appendChild(t);
  for (const cls of ["p95", "rps"]) {
    const p = document.createElementNS(SVG, "polyline");
    p.setAttribute("class", cls);
    s.appendChild(p);
  }
  return s;
}

function points(series) {
  const vals = series.map((v) => (v === null ? 0 : v));
  const top = Math.max(1, ...vals);
  const step = 120 / Math.max(1, vals.length - 1);
  return vals.map((v, i) => `${(i * step).toFixed(1)},${(29 - (v / top) * 27).toFixed(1)}`).join(" ");
}

function updateSpark(s, t) {
  const rps = s.querySelector(".rps");
  const p95 = s.querySelector(".p95");
  const rp = points(t.rps_series);
  if (rps.getAttribute("points") !== rp) rps.setAttribute("points", rp);
  p95.setAttribute("points", points(t.p95_series));
  s.dataset.requests = String(t.rps_series.reduce((a, b) => a + b, 0));
  s.querySelector("title").textContent =
    `requests per second (blue) and p95 latency (orange), last ${t.rps_series.length} s`;
}

function errorsText(errors) {
  return Object.entries(errors || {})
    .map(([k, n]) => `${k}×${n}`)
    .join(" ");
}

// -- dynos ------------------------------------------------------------------------------------------------------
function makeDyno(d) {
  const e = el("div", "dyno");
  const line = el("div", "dline");
  line.append(el("span", "dname"), " ", el("span", "dstate"), " ", el("span", "dmeta"), " ", el("span", "dapp"));
  const traffic = el("div", "traffic");
  traffic.append(spark("traffic"), el("span", "tfig"), el("span", "herr"));
  const actions = el("div", "dactions");
  if (!d.old) {
    actions.append(
      button("restart", "Restart", `Restart ${d.name} of ${d.app}`, () =>
        call("DELETE", `/apps/${seg(d.app)}/dynos/${seg(d.name)}`, {}, `restart ${d.name}`),
      ),
      button("stop", "Stop", `Stop ${d.name} of ${d.app}`, () =>
        call("POST", `/apps/${seg(d.app)}/dynos/${seg(d.name)}/actions/stop`, {}, `stop ${d.name}`),
      ),
    );
  }
  e.append(line, traffic, actions);
  return e;
}

function updateDyno(e, d) {
  e.className = `dyno state-${d.state}${d.old ? " old" : ""}`;
  e.dataset.app = d.app;
  e.dataset.name = d.name;
  e.dataset.state = d.state;
  setText(e.querySelector(".dname"), d.name);
  setText(e.querySelector(".dstate"), d.old ? (d.routed ? "old, serving" : "old, retiring") : d.state);
  const since = d.since ? age(snapshot.now - d.since) : "";
  setText(e.querySelector(".dmeta"), `v${d.release} · ${d.size}${since ? " · " + since : ""}`);
  setText(e.querySelector(".dapp"), d.app);
  const traffic = e.querySelector(".traffic");
  const t = d.traffic;
  traffic.hidden = !t;
  if (t) {
    updateSpark(traffic.querySelector(".spark"), t);
    setText(traffic.querySelector(".tfig"), `${t.rps} rps p50 ${ms(t.p50)} p95 ${ms(t.p95)}`);
    setText(traffic.querySelector(".herr"), errorsText(t.errors));
  }
}

function dynoKey(d) {
  return `${d.app}/${d.name}${d.old ? "/old/" + d.release : ""}`;
}

// -- instances --------------------------------------------------------------------------------------------------
const FAULTS = [
  ["cpu 0.05 CPU", { kind: "cpu", cpus: 0.05 }],
  ["latency 300 ms", { kind: "latency", ms: 300 }],
  ["loss 30 %", { kind: "loss", percent: 30 }],
  ["blackhole", { kind: "blackhole" }],
  ["host failure (moves its dynos)", { kind: "host-failure" }],
];

function makeInstance(inst) {
  const e = el("article", "instance");
  e.id = `inst-${inst.id}`;
  const head = el("header");
  head.append(el("span", "iid", inst.id), el("span", "istate"), el("span", "iextra muted"), el("span", "badges"));
  const foot = el("div", "ifoot");
  const pick = el("select", "fault-kind");
  pick.setAttribute("aria-label", `Fault to add to ${inst.id}`);
  FAULTS.forEach(([label], i) => {
    const o = el("option", "", label);
    o.value = String(i);
    pick.appendChild(o);
  });
  foot.append(
    pick,
    button("add-fault", "Add fault", `Add the chosen fault to instance ${inst.id}`, () =>
      call("POST", `/instances/${seg(inst.id)}/faults`, FAULTS[Number(pick.value)][1], `fault on ${inst.id}`),
    ),
    button("clear-faults", "Clear faults", `Clear the faults of instance ${inst.id}`, () =>
      call("DELETE", `/instances/${seg(inst.id)}/faults`, {}, `clear faults of ${inst.id}`),
    ),
  );
  e.append(head, el("div", "dynos"), foot);
  return e;
}

function updateInstance(e, inst) {
  e.className = `instance state-${inst.state}${inst.faults.length ? " faulted" : ""}`;
  e.dataset.instance = inst.id;
  setText(e.querySelector(".istate"), inst.state);
  const extra = Object.entries(inst.extra || {})
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(" · ");
  setText(e.querySelector(".iextra"), extra);
  keyed(
    e.querySelector(".badges"),
    inst.faults,
    (f) => f.label,
    (f) => el("span", "badge", f.label),
    (b, f) => {
      b.title = f.expires_at ? `reverts in ${age(f.expires_at - snapshot.now)}` : "until cleared";
    },
  );
  keyed(e.querySelector(".dynos"), inst.dynos, dynoKey, makeDyno, updateDyno);
}

// -- runtimes ---------------------------------------------------------------------------------------------------
function makeRuntime(rt) {
  const e = el("section", rt.id === "common" ? "runtime" : "runtime space");
  const h = el("h2");
  h.append(el("span", "rname"), " ", el("small", "rapps"));
  const loose = el("div", "loose");
  loose.append(el("h3", "muted", "Dynos on no instance (starting, crashed, down)"), el("div", "dynos"));
  e.append(h, el("div", "rerr herr"), el("div", "instances"), loose);
  return e;
}

function updateRuntime(e, rt) {
  e.dataset.runtime = rt.id;
  setText(e.querySelector(".rname"), rt.name);
  setText(e.querySelector(".rapps"), rt.apps.length ? `apps: ${rt.apps.join(", ")}` : "no apps");
  const routerErr = Object.entries(rt.router_traffic || {})
    .filter(([, t]) => Object.keys(t.errors).length)
    .map(([app, t]) => `router for ${app}: ${errorsText(t.errors)}`)
    .join("; ");
  setText(e.querySelector(".rerr"), routerErr);
  keyed(e.querySelector(".instances"), rt.instances, (i) => i.id, makeInstance, updateInstance);
  const loose = e.querySelector(".loose");
  loose.hidden = !rt.dynos.length;
  keyed(loose.querySelector(".dynos"), rt.dynos, dynoKey, makeDyno, updateDyno);
}

// -- apps -------------------------------------------------------------------------------------------------------
function makeApp(a) {
  const e = el("article", "app");
  const h = el("h3");
  h.append(el("span", "aname", a.name), " ", el("small", "", a.space ? `space ${a.space}` : "Common Runtime"));
  const scale = el("div", "row formation");
  const preboot = el("div", "row preboot");
  preboot.append(
    el("span", "ptext"),
    button("preboot-toggle", "", `Toggle preboot of ${a.name}`, () => {
      const on = !snapshot.apps.find((x) => x.name === a.name).preboot.enabled;
      call("PATCH", `/apps/${seg(a.name)}/features/preboot`, { enabled: on }, `preboot ${on ? "on" : "off"}`);
    }),
  );
  const traffic = el("div", "row gen");
  const rps = el("input", "gen-rps");
  rps.type = "number";
  rps.value = "5";
  rps.step = "any";
  rps.setAttribute("aria-label", `Requests per second to send to ${a.name}`);
  traffic.append(
    el("span", "", "Traffic"),
    rps,
    el("span", "", "rps"),
    button("gen-start", "Start", `Start a traffic generator against ${a.name}`, () =>
      call("POST", `/apps/${seg(a.name)}/traffic`, { rps: Number(rps.value), duration: 600 }, `traffic to ${a.name}`),
    ),
    button("gen-stop", "Stop", `Stop the traffic generator against ${a.name}`, () =>
      call("DELETE", `/apps/${seg(a.name)}/traffic`, {}, `traffic to ${a.name} stopped`),
    ),
    el("span", "gen-state muted"),
  );
  e.append(h, el("div", "rel"), el("ol", "releases"), scale, preboot, traffic);
  return e;
}

function makeScale(app) {
  return (f) => {
    const row = el("span", "scale");
    const n = el("input", "qty");
    n.type = "number";
    n.value = String(f.quantity);
    n.setAttribute("aria-label", `Number of ${f.type} dynos of ${app}`);
    row.append(
      el("span", "", `${f.type} (${f.size})`),
      n,
      button("scale", "Scale", `Scale ${f.type} of ${app}`, () =>
        call("PATCH", `/apps/${seg(app)}/formation/${seg(f.type)}`, { quantity: Number(n.value) }, `scale ${f.type}`),
      ),
    );
    return row;
  };
}

function updateApp(e, a) {
  e.dataset.app = a.name;
  setText(e.querySelector(".rel"), a.release ? `release v${a.release}${a.maintenance ? " · maintenance" : ""}` : "not deployed");
  keyed(
    e.querySelector(".releases"),
    a.releases,
    (r) => String(r.version),
    () => el("li"),
    (li, r) => {
      li.className = r.current ? "current" : "";
      setText(li, `v${r.version} ${r.description}${r.status === "failed" ? " (failed)" : ""}`);
    },
  );
  keyed(e.querySelector(".formation"), a.formation, (f) => f.type, makeScale(a.name), (row, f) => {
    const n = row.querySelector(".qty");
    if (document.activeElement !== n && row.dataset.seen !== String(f.quantity)) n.value = String(f.quantity);
    row.dataset.seen = String(f.quantity);
  });
  const p = a.preboot;
  let text = `preboot ${p.enabled ? "on" : "off"}`;
  if (p.state === "prebooting") {
    text += ` · old v${p.old_releases.join(",")} serves; switch in ${age(p.switch_at - snapshot.now)}`;
  } else if (p.state === "switching") {
    const who = p.serving === "both" ? `new and old v${p.old_releases.join(",")} serve` : "new serves";
    text += ` · ${who}; old retire in ${age((p.retire_at || snapshot.now) - snapshot.now)}`;
  } else if (p.state === "rolling") {
    text += " · rolling restart";
  } else if (p.enabled) {
    text += " · one generation serves";
  }
  setText(e.querySelector(".ptext"), text);
  setText(e.querySelector(".preboot-toggle"), p.enabled ? "Disable preboot" : "Enable preboot");
  const g = snapshot.generators.find((x) => x.app === a.name);
  setText(e.querySelector(".gen-state"), g ? `running: ${g.sent} sent in ${age(g.elapsed)}` : "");
}

// -- the router log ---------------------------------------------------------------------------------------------
function renderTail(ol, lines) {
  keyed(
    ol,
    lines.slice().reverse(),
    (l) => String(l.id),
    (l) => {
      const li = el("li");
      const t = new Date(l.ts * 1000).toLocaleTimeString();
      li.append(el("span", "muted", `${t} `), el("span", "app-name", l.app), " ");
      // the request id and fwd fields are long and say little on a screen: left out here
      const msg = l.msg
        .replace(/ request_id=\S+/, "")
        .replace(/ fwd="[^"]*"/, "")
        .replace(/ host=\S+/, "")
        .replace(/ protocol=\S+/, "");
      const m = /code=(H\d\d)/.exec(msg);
      if (m) {
        const i = m.index;
        li.append(msg.slice(0, i), el("span", "hcode", m[0]), msg.slice(i + m[0].length));
        li.className = "has-hcode";
      } else li.append(msg);
      return li;
    },
    () => {},
  );
}

// -- the stream -------------------------------------------------------------------------------------------------
function render(s) {
  snapshot = s;
  setText($("lab"), `lab ${s.lab}`);
  keyed($("runtimes"), s.runtimes, (r) => r.id, makeRuntime, updateRuntime);
  keyed($("apps"), s.apps, (a) => a.name, makeApp, updateApp);
  renderTail($("tail"), s.router_tail);
  renderTail($("hcodes"), s.router_errors);
  $("hcodes-none").hidden = s.router_errors.length > 0;
}

function connect() {
  const conn = $("conn");
  const events = new EventSource("/dashboard/events");
  events.onopen = () => {
    conn.textContent = "live";
    conn.className = "conn live";
  };
  events.onmessage = (m) => render(JSON.parse(m.data));
  events.onerror = async () => {
    conn.textContent = "reconnecting…";
    conn.className = "conn lost";
    try {
      const r = await fetch("/dashboard/static/app.css", { credentials: "same-origin" });
      if (r.status === 401) {
        events.close();
        conn.textContent = "logged out";
        const error = $("error");
        error.textContent = "Your session has ended (the controller restarted?). Run `labctl dashboard` again.";
        error.hidden = false;
      }
    } catch (e) {
      /* the controller is away: EventSource retries by itself */
    }
  };
}

function largeType(on) {
  document.body.classList.toggle("large", on);
  $("large").setAttribute("aria-pressed", String(on));
  try {
    localStorage.setItem("labctl-large", on ? "1" : "");
  } catch (e) {
    /* storage may be off */
  }
}

$("large").addEventListener("click", () => largeType(!document.body.classList.contains("large")));
document.addEventListener("keydown", (ev) => {
  const tag = (ev.target.tagName || "").toLowerCase();
  if (ev.key.toLowerCase() === "l" && !ev.ctrlKey && !ev.metaKey && !ev.altKey && !["input", "select", "textarea"].includes(tag)) {
    largeType(!document.body.classList.contains("large"));
  }
});
try {
  largeType(localStorage.getItem("labctl-large") === "1");
} catch (e) {
  /* storage may be off */
}
connect();
