// The strat dashboard: reads the REST API, follows the live event stream, sends the commands.
// Everything comes from this server (no CDN); data is put in the page as text, never as HTML.
"use strict";

const TOKEN_KEY = "strat-token"; // sessionStorage key of the API token (kept in this tab only)
const state = {
  deployment: "", // the deployment shown ("" = the server's default)
  seen: new Set(), // ids of the events in the log
  refreshTimer: null, // pending refresh after a burst of events
  stream: null, // the stream's AbortController
  denied: false, // whether the server refused the token
};

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------------------------------- API

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function query(params = {}) {
  const q = new URLSearchParams(params);
  if (state.deployment) q.set("deployment", state.deployment);
  const text = q.toString();
  return text ? `?${text}` : "";
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, params = {}, body = undefined) {
  const init = { headers: headers() };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(`/api/${path}${query(params)}`, init);
  if (answer.status === 401) {
    showLogin("");
    throw new ApiError(401, "a token is needed");
  }
  const data = await answer.json().catch(() => ({ error: `HTTP ${answer.status}` }));
  if (!answer.ok) throw new ApiError(answer.status, data.error || `HTTP ${answer.status}`);
  return data;
}

// --------------------------------------------------------------------------------------- helpers

function el(tag, text = "", cls = "") {
  const node = document.createElement(tag);
  if (text !== "") node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function num(value, digits = 2) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function money(value) {
  const cell = el("td", value === null || value === undefined ? "–" : num(value, 2), "num");
  if (value > 0) cell.classList.add("up");
  if (value < 0) cell.classList.add("down");
  return cell;
}

function pct(value) {
  const cell = money(value === null ? null : value * 100);
  if (value !== null) cell.textContent += "%";
  return cell;
}

function when(iso) {
  // "2024-03-01T10:00:00Z" -> "2024-03-01 10:00" (UTC, to the minute)
  return iso ? iso.slice(0, 16).replace("T", " ") : "–";
}

function fill(tableId, rows, render, empty) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren();
  for (const row of rows) body.append(render(row));
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", empty, "muted");
    td.colSpan = $(tableId).querySelectorAll("th").length;
    tr.append(td);
    body.append(tr);
  }
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", String(cell)));
  return tr;
}

function notice(text, error = false) {
  const node = $("notice");
  node.textContent = text;
  node.className = error ? "error" : "muted";
}

// ----------------------------------------------------------------------------------------- views

function renderStatus(s, pnl) {
  const dl = $("status");
  dl.replaceChildren();
  const items = [
    ["deployment", s.deployment],
    ["state", s.state + (s.halted ? " (halted)" : "")],
    ["mode", `${s.mode} on ${s.exchange}`],
    ["spec", `${s.spec_path} @ ${s.version}`],
    ["equity", `${num(s.equity)} ${pnl ? pnl.quote : ""}`],
    ["cash", num(s.cash)],
    ["PnL", pnl ? `day ${num(pnl.day)} · week ${num(pnl.week)} · total ${num(pnl.total)}` : "–"],
    ["positions", `${s.positions} of ${s.sleeves} sleeves`],
    ["paused", s.paused.length ? s.paused.join(", ") : "none"],
    ["last update", when(s.last_update)],
  ];
  if (!s.attached) items.push(["commands", "none here: they go to the process running this deployment"]);
  for (const [key, value] of items) dl.append(el("dt", key), el("dd", value));
  dl.dataset.state = s.state;
  renderReload(s.last_reload);
}

function renderReload(r) {
  const box = $("reload");
  box.replaceChildren();
  if (!r) {
    box.append(el("p", "no reload yet", "muted"));
    return;
  }
  box.append(el("p", `${when(r.time)} · ${r.ok ? "applied" : "kept the running version"} · by ${r.who}`,
    r.ok ? "up" : "down"));
  box.append(el("pre", r.message));
}

function renderEquity(points) {
  const svg = $("equity");
  const width = svg.clientWidth || 600;
  const height = 180;
  const pad = { left: 64, right: 8, top: 10, bottom: 20 };
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  $("equity-note").textContent = points.length < 2 ? "the curve starts after two checkpoints" : "";
  if (points.length < 2) return;
  const values = points.map((p) => p.equity);
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (high - low < 1e-9) { low -= 1; high += 1; }
  const x = (i) => pad.left + (i / (points.length - 1)) * (width - pad.left - pad.right);
  const y = (v) => pad.top + (1 - (v - low) / (high - low)) * (height - pad.top - pad.bottom);
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs, text = "") => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    svg.append(node);
  };
  for (const v of [low, high]) {
    make("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "grid" });
    make("text", { x: 4, y: y(v) + 4 }, num(v));
  }
  make("text", { x: pad.left, y: height - 4 }, when(points[0].time));
  make("text", { x: width - pad.right, y: height - 4, "text-anchor": "end" }, when(points.at(-1).time));
  const line = points.map((p, i) => `${x(i).toFixed(1)},${y(p.equity).toFixed(1)}`).join(" ");
  make("polyline", { points: line, class: "curve" });
}

function actionButton(action, label, sleeve) {
  const b = el("button", label);
  b.type = "button";
  b.dataset.action = action;
  b.dataset.sleeve = sleeve;
  if (action === "flatten") b.classList.add("danger");
  return b;
}

function renderSleeves(sleeves) {
  fill("sleeves", sleeves, (s) => {
    const flags = s.held.length ? s.held.join(", ") : "trading";
    const buttons = el("td");
    buttons.append(
      s.paused ? actionButton("resume", "resume", s.name) : actionButton("pause", "pause", s.name),
      actionButton("flatten", "flatten", s.name),
    );
    const tr = row([s.name, `${s.symbol} ${s.timeframe}`, el("td", num(s.position, 8), "num"),
      el("td", num(s.avg_entry), "num"), el("td", num(s.last_close), "num"), money(s.realized_pnl),
      money(s.unrealized_pnl), flags + (s.halted ? ", halted" : ""), when(s.last_bar), buttons]);
    tr.dataset.sleeve = s.name;
    tr.dataset.paused = String(s.paused);
    return tr;
  }, "no sleeve");
}

function renderPositions(positions) {
  fill("positions", positions, (p) => row([p.sleeve, p.symbol, p.side, el("td", num(p.qty, 8), "num"),
    el("td", num(p.avg_entry), "num"), el("td", num(p.value), "num"), money(p.unrealized_pnl)]), "flat");
}

function renderOrders(orders) {
  fill("orders", orders, (o) => row([o.sleeve, o.side, o.intent, el("td", num(o.qty, 8), "num"),
    el("td", num(o.filled, 8), "num"), o.status + (o.error ? ` (${o.error})` : ""), when(o.created)]),
  "no open order");
}

function renderTrades(trades) {
  fill("trades", trades, (t) => row([t.sleeve, t.symbol, t.side, el("td", num(t.qty, 8), "num"),
    when(t.entry_time), el("td", num(t.entry_price), "num"), when(t.exit_time), el("td", num(t.exit_price), "num"),
    money(t.pnl), pct(t.ret), t.exit_reason]), "no trade yet");
}

function addEvents(events) {
  const list = $("events");
  for (const e of events) {
    if (state.seen.has(e.id)) continue;
    state.seen.add(e.id);
    const item = el("li");
    item.dataset.id = e.id;
    item.dataset.kind = e.kind;
    item.append(el("span", when(e.time), "muted"), el("span", e.kind, "kind"),
      el("span", `${e.sleeve ? `${e.sleeve}: ` : ""}${e.message}${e.who !== "engine" ? ` (by ${e.who})` : ""}`));
    list.prepend(item);
  }
  while (list.children.length > 300) list.lastChild.remove();
}

function renderRuns(runs) {
  fill("runs", runs, (r) => {
    const cell = el("td");
    if (r.report) {
      const link = el("a", "report");
      link.href = `/api/runs/${r.id}/report`;
      link.dataset.run = r.id;
      link.addEventListener("click", (ev) => { ev.preventDefault(); openReport(r.id); });
      cell.append(link);
    } else {
      cell.append(el("span", "none", "muted"));
    }
    return row([r.id, when(r.saved), r.spec, r.mode, `${when(r.start)} → ${when(r.end)}`, pct(r.total_return),
      pct(r.max_drawdown), el("td", num(r.sharpe), "num"), cell]);
  }, "no saved run (strat run SPEC --backtest saves one)");
}

async function openReport(id) {
  // The report needs the token, which a plain link cannot send: fetch it and open it as a blob.
  const tab = window.open("", "_blank");
  try {
    const answer = await fetch(`/api/runs/${id}/report`, { headers: headers() });
    if (!answer.ok) throw new Error((await answer.json()).error);
    const url = URL.createObjectURL(new Blob([await answer.text()], { type: "text/html" }));
    if (tab) tab.location.href = url; else window.location.href = url;
  } catch (error) {
    if (tab) tab.close();
    notice(`run ${id}: ${error.message}`, true);
  }
}

function renderDeployments(list) {
  const select = $("deployment");
  const chosen = state.deployment;
  select.replaceChildren();
  for (const d of list) {
    const option = el("option", `${d.name} · ${d.mode} · ${d.state}`);
    option.value = d.key;
    select.append(option);
  }
  select.hidden = list.length < 2;
  if (chosen) select.value = chosen;
}

// --------------------------------------------------------------------------------------- refresh

async function refresh() {
  // The deployments first: over a store without any (strat serve of backtest runs) only the runs are asked.
  const runs = api("runs", { limit: 100 }).catch(() => []);
  let deployments;
  try {
    deployments = await api("deployments");
  } catch (error) {
    if (error.status !== 401) notice(error.message, true);
    return;
  }
  renderDeployments(deployments);
  const calls = deployments.length ? {
    status: api("status"), pnl: api("pnl"), sleeves: api("sleeves"), positions: api("positions"),
    orders: api("orders"), trades: api("trades", { limit: 50 }), equity: api("equity", { points: 400 }),
    events: api("events", { limit: 200 }),
  } : {};
  const names = Object.keys(calls);
  const done = await Promise.allSettled(Object.values(calls));
  const got = {};
  names.forEach((name, i) => { got[name] = done[i].status === "fulfilled" ? done[i].value : null; });
  if (state.denied) return;
  const failed = done.find((d) => d.status === "rejected");
  if (got.status) renderStatus(got.status, got.pnl);
  else $("status").replaceChildren();
  $("status-error").textContent = deployments.length
    ? (got.status ? "" : failed?.reason.message || "")
    : "no deployment in this store yet (strat run SPEC --paper starts one)";
  renderSleeves(got.sleeves || []);
  renderPositions(got.positions || []);
  renderOrders(got.orders || []);
  renderTrades(got.trades || []);
  renderEquity(got.equity || []);
  addEvents(got.events || []);
  renderRuns(await runs);
  if (!got.status) renderReload(null);
  document.body.dataset.attached = got.status ? String(got.status.attached) : "false";
  if (failed && failed.reason.status !== 401) notice(failed.reason.message, true);
}

function soon() {
  // A burst of events (a bar's fills) refreshes once.
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(refresh, 150);
}

// ---------------------------------------------------------------------------------------- stream

async function follow() {
  // Server-sent events read with fetch, so the token goes in a header (never in the URL).
  if (state.stream) state.stream.abort();
  const control = new AbortController();
  state.stream = control;
  const badge = $("live");
  try {
    const answer = await fetch(`/api/stream${query()}`, { headers: headers(), signal: control.signal });
    if (answer.status === 401) { showLogin(""); return; }
    if (!answer.ok || !answer.body) throw new Error(`HTTP ${answer.status}`);
    badge.textContent = "live";
    badge.className = "badge on";
    soon(); // whatever happened while the stream was down
    const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) {
          addEvents([JSON.parse(data)]);
          soon();
        }
      }
    }
  } catch (error) {
    if (control.signal.aborted) return;
  }
  if (state.stream !== control) return;
  badge.textContent = "offline";
  badge.className = "badge off";
  setTimeout(follow, 2000);
}

// -------------------------------------------------------------------------------------- commands

function confirmDialog(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

async function command(action, sleeve) {
  const body = sleeve ? { sleeve } : {};
  const target = sleeve ? `sleeve ${sleeve}` : "every sleeve";
  if (action === "flatten" || action === "halt") {
    const text = action === "halt"
      ? "Halt the portfolio? Every position is closed at market and no entry is made until reset."
      : `Flatten ${target}? Its position is closed at market and it stays paused until resumed.`;
    if (!(await confirmDialog(text))) return;
    body.confirm = true;
  }
  try {
    const done = await api(action, {}, body);
    notice(done.message);
  } catch (error) {
    notice(error.message, true);
  }
  refresh();
}

// ----------------------------------------------------------------------------------------- login

function showLogin(message) {
  state.denied = true;
  $("login").hidden = false;
  $("main").hidden = true;
  $("login-error").textContent = message;
  $("token").focus();
}

function start() {
  state.denied = false;
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
  state.seen.clear();
  $("events").replaceChildren();
  refresh();
  follow();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    const answer = await fetch("/api/deployments", { headers: { Authorization: `Bearer ${token}` } });
    if (answer.status === 401) {
      $("login-error").textContent = "this token is not accepted";
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    start();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.stream) state.stream.abort();
    showLogin("");
  });
  $("deployment").addEventListener("change", (ev) => {
    state.deployment = ev.target.value;
    start();
  });
  document.body.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (button) command(button.dataset.action, button.dataset.sleeve || "");
  });
  window.addEventListener("resize", soon);
  const needsToken = document.querySelector('meta[name="strat-auth"]').content === "token";
  if (needsToken && !sessionStorage.getItem(TOKEN_KEY)) showLogin("");
  else start();
});
