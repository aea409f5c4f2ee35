// guardit web console: forget sets (register, tune, revoke, build progress), audit log and A/B compare
// over the HTTP API (SPEC.md). Vanilla JS, no build step; every server string is inserted as text, never HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "guardit-api-key";
  const state = { key: sessionStorage.getItem(KEY_STORE) || "", pollTimer: null, wasBusy: false, sets: [] };

  class ApiFailure extends Error {
    constructor(status, error) {
      super(error.message + (error.field ? ` (field: ${error.field})` : ""));
      this.status = status;
      this.field = error.field;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (state.key) headers.Authorization = `Bearer ${state.key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    if (!res.ok) {
      const error = (data && data.error) || { message: `${res.status} ${res.statusText}`, field: null };
      throw new ApiFailure(res.status, error);
    }
    return data;
  }

  function say(id, text, kind) {
    const el = $(id);
    el.textContent = text;
    el.className = `message ${kind || ""}`;
  }

  function explain(err) {
    if (err.status === 401) return `${err.message}: enter a valid API key above`;
    if (err.status === 403) return `${err.message}: this key lacks the scope`;
    return err.message;
  }

  function td(tr, text, cls) {
    const cell = document.createElement("td");
    cell.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) cell.className = cls;
    tr.appendChild(cell);
    return cell;
  }

  function fmtTime(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z") : "";
  }

  // -- server status --------------------------------------------------------------------------
  // Called at start and after every change to the registry, so the header count is never stale.
  async function checkServer(retry = true) {
    try {
      const ready = await api("GET", "/readyz");
      const where = ready.data_dir ? ` \u00b7 data ${ready.data_dir}` : "";
      say("server-status", `ready: model ${ready.model}, ${ready.forget_sets_active} active forget set(s)${where}`, "ok");
      $("server-status").dataset.active = String(ready.forget_sets_active);
    } catch (err) {
      say("server-status", `not ready: ${err.message}`, "warn");
      if (retry) setTimeout(checkServer, 3000);
    }
  }

  // -- forget sets ----------------------------------------------------------------------------
  function actionsCell(tr, set) {
    const cell = td(tr, "", "actions");
    if (set.status === "revoked") return;
    if (set.status !== "failed") {
      const edit = document.createElement("button");
      edit.type = "button";
      edit.textContent = "Edit";
      edit.className = "secondary edit";
      edit.addEventListener("click", () => openEditor(set));
      cell.append(edit);
    }
    const reason = document.createElement("input");
    reason.placeholder = "reason";
    reason.className = "reason";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Revoke";
    button.className = "danger";
    button.addEventListener("click", () => revoke(set.id, reason.value.trim()));
    cell.append(reason, button);
  }

  // Whether a set steers: a revoked or failed set never does, whatever its enabled flag says.
  function steering(set) {
    if (set.status === "revoked") return "revoked";
    if (set.status === "failed") return "no (build failed)";
    if (set.status !== "active") return "not yet";
    return set.enabled ? "yes" : "disabled";
  }

  function statusCell(tr, set) {
    const status = td(tr, set.status, `badge ${set.status}`);
    if (set.error) status.title = set.error;
    if (set.status !== "building" && set.status !== "pending") return;
    const fraction = typeof set.build_progress === "number" ? set.build_progress : null;
    const bar = document.createElement("progress");
    bar.className = "build";
    bar.max = 1;
    if (fraction !== null) bar.value = fraction;  // no value: an indeterminate bar until the builder reports
    status.appendChild(bar);
    const phase = document.createElement("span");
    phase.className = "phase";
    phase.textContent = set.build_phase
      ? `${set.build_phase}${fraction === null ? "" : ` ${Math.round(100 * fraction)}%`}` : "waiting for the builder";
    status.appendChild(phase);
  }

  function renderSets(sets) {
    state.sets = sets;
    const body = $("sets-table").querySelector("tbody");
    body.replaceChildren();
    for (const set of sets) {
      const tr = document.createElement("tr");
      tr.dataset.id = set.id;
      td(tr, set.id, "mono");
      td(tr, set.name);
      statusCell(tr, set);
      td(tr, set.n_documents);
      td(tr, set.n_clusters);
      td(tr, set.layer);
      td(tr, set.threshold === null ? "" : set.threshold.toFixed(2));
      td(tr, set.alpha === null ? "" : set.alpha.toFixed(2));
      td(tr, steering(set), "steering");
      td(tr, fmtTime(set.created_at));
      actionsCell(tr, set);
      body.appendChild(tr);
    }
  }

  async function loadSets() {
    clearTimeout(state.pollTimer);
    try {
      const data = await api("GET", "/v1/forget-sets");
      renderSets(data.forget_sets);
      const busy = data.forget_sets.filter((s) => s.status === "pending" || s.status === "building").length;
      say("sets-message", `${data.forget_sets.length} forget set(s)` + (busy ? `, ${busy} building...` : ""), "ok");
      if (busy) state.pollTimer = setTimeout(loadSets, 1500);
      else if (state.wasBusy) {
        loadAudit();
        checkServer(false);
      }
      state.wasBusy = busy > 0;
    } catch (err) {
      renderSets([]);
      say("sets-message", explain(err), "error");
    }
  }

  async function revoke(id, reason) {
    if (!reason) {
      say("sets-message", `enter a reason to revoke ${id}`, "error");
      return;
    }
    try {
      await api("DELETE", `/v1/forget-sets/${encodeURIComponent(id)}?reason=${encodeURIComponent(reason)}`);
      await loadSets();
      say("sets-message", `revoked ${id}: ${reason}`, "ok");
    } catch (err) {
      await loadSets();
      say("sets-message", explain(err), "error");
    }
    if (!$("edit-form").hidden && $("edit-id").textContent === id) $("edit-form").hidden = true;
    checkServer(false);
    loadAudit();
  }

  // -- tuning ---------------------------------------------------------------------------------
  function openEditor(set) {
    $("edit-id").textContent = set.id;
    $("edit-threshold").value = set.threshold === null ? "" : set.threshold;
    $("edit-alpha").value = set.alpha === null ? "" : set.alpha;
    $("edit-enabled").checked = Boolean(set.enabled);
    $("edit-reason").value = "";
    say("edit-message", "", "");
    $("edit-form").hidden = false;
    $("edit-reason").focus();
  }

  async function saveEdit(event) {
    event.preventDefault();
    const id = $("edit-id").textContent;
    const set = state.sets.find((s) => s.id === id) || {};
    const reason = $("edit-reason").value.trim();
    if (!reason) {
      say("edit-message", "enter a reason: every change is audited", "error");
      return;
    }
    const body = { reason };
    for (const field of ["threshold", "alpha"]) {
      const raw = $(`edit-${field}`).value.trim();
      if (raw !== "" && Number(raw) !== set[field]) body[field] = Number(raw);
    }
    if ($("edit-enabled").checked !== Boolean(set.enabled)) body.enabled = $("edit-enabled").checked;
    if (Object.keys(body).length === 1) {
      say("edit-message", "nothing changed", "warn");
      return;
    }
    say("edit-message", "saving...", "");
    try {
      const r = await api("PATCH", `/v1/forget-sets/${encodeURIComponent(id)}`, body);
      const enabled = r.enabled ? "enabled" : "disabled";
      say("edit-message", `updated ${id}: threshold ${r.threshold}, alpha ${r.alpha}, ${enabled}`, "ok");
      await loadSets();
      checkServer(false);
      loadAudit();
    } catch (err) {
      say("edit-message", explain(err), "error");
    }
  }

  // -- registration ---------------------------------------------------------------------------
  function addQaRow(question = "", answer = "") {
    const row = document.createElement("div");
    row.className = "qa-row";
    const q = document.createElement("input");
    q.placeholder = "question";
    q.value = question;
    q.className = "qa-question";
    const a = document.createElement("input");
    a.placeholder = "answer";
    a.value = answer;
    a.className = "qa-answer";
    const drop = document.createElement("button");
    drop.type = "button";
    drop.textContent = "x";
    drop.className = "secondary";
    drop.addEventListener("click", () => row.remove());
    row.append(q, a, drop);
    $("qa-rows").appendChild(row);
  }

  function parseJsonl(text) {
    const documents = [];
    const qa = [];
    text.split("\n").forEach((line, i) => {
      if (!line.trim()) return;
      let item;
      try { item = JSON.parse(line); } catch (_) { throw new Error(`line ${i + 1}: expected a JSON object`); }
      if (item && typeof item.text === "string") documents.push(item.text);
      else if (item && typeof item.question === "string" && typeof item.answer === "string") {
        qa.push({ question: item.question, answer: item.answer });
      } else throw new Error(`line ${i + 1}: expected {"text"} or {"question", "answer"}`);
    });
    if (documents.length && qa.length) throw new Error("expected either text lines or question/answer lines, found both");
    if (!documents.length && !qa.length) throw new Error("expected at least one line");
    return documents.length ? { documents } : { qa };
  }

  function formContent() {
    const kind = document.querySelector('input[name="reg-kind"]:checked').value;
    if (kind === "jsonl") return parseJsonl($("reg-jsonl").value);
    const qa = [...document.querySelectorAll(".qa-row")]
      .map((row) => ({ question: row.querySelector(".qa-question").value.trim(),
                       answer: row.querySelector(".qa-answer").value.trim() }))
      .filter((p) => p.question || p.answer);
    if (!qa.length) throw new Error("expected at least one question/answer row");
    return { qa };
  }

  function optionalNumber(id, body, field) {
    const value = $(id).value.trim();
    if (value !== "") body[field] = Number(value);
  }

  async function register(event) {
    event.preventDefault();
    say("register-message", "", "");  // never leave the previous outcome standing
    let body;
    try {
      body = { name: $("reg-name").value.trim(), reason: $("reg-reason").value.trim(),
               requested_by: $("reg-requested-by").value.trim() };
      for (const [field, label] of [["name", "name"], ["requested_by", "requested by"], ["reason", "reason"]]) {
        if (!body[field]) throw new Error(`expected a ${label}, found it empty`);
      }
      Object.assign(body, formContent());
    } catch (err) {
      say("register-message", err.message, "error");
      return;
    }
    if ($("reg-ticket").value.trim()) body.ticket = $("reg-ticket").value.trim();
    const subjects = $("reg-subjects").value.split(",").map((s) => s.trim()).filter(Boolean);
    if (subjects.length) body.subjects = subjects;
    optionalNumber("reg-layer", body, "layer");
    optionalNumber("reg-threshold", body, "threshold");
    optionalNumber("reg-alpha", body, "alpha");
    say("register-message", "registering...", "");
    try {
      const created = await api("POST", "/v1/forget-sets", body);
      say("register-message", `registered ${created.id} (${created.status}); building in the background`, "ok");
      await loadSets();
      checkServer(false);
      loadAudit();
    } catch (err) {
      say("register-message", explain(err), "error");
    }
  }

  // -- A/B compare ----------------------------------------------------------------------------
  function commonPrefix(a, b) {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i += 1;
    return i;
  }

  // The responses carry text, not token strings: the word holding the first differing character stands
  // for the first divergent token and is marked in both panes (the common prefix is identical).
  function paint(el, text, at) {
    el.replaceChildren();
    if (at === null) {
      el.textContent = text;
      return;
    }
    let start = Math.min(at, text.length);
    while (start > 0 && !/\s/.test(text[start - 1])) start -= 1;
    let end = Math.max(at, start);
    while (end < text.length && !/\s/.test(text[end])) end += 1;
    const mark = document.createElement("mark");
    mark.className = "divergent";
    mark.textContent = end > start ? text.slice(start, end) : "\u2205";  // an arm that ended early
    mark.title = end > start ? "first divergent token" : "this arm ended here";
    el.append(document.createTextNode(text.slice(0, start)), mark, document.createTextNode(text.slice(end)));
  }

  function renderMatched(matched) {
    const body = $("matched-table").querySelector("tbody");
    body.replaceChildren();
    for (const m of matched) {
      const tr = document.createElement("tr");
      td(tr, m.forget_set_id, "mono");
      td(tr, m.cluster);
      td(tr, m.similarity.toFixed(3));
      body.appendChild(tr);
    }
    if (!matched.length) {
      const tr = document.createElement("tr");
      td(tr, "none: the gate stayed closed").colSpan = 3;
      body.appendChild(tr);
    }
  }

  async function compare(event) {
    event.preventDefault();
    const body = { prompt: $("compare-prompt").value, max_new_tokens: Number($("compare-max").value) };
    if ($("compare-seed").value.trim() !== "") body.seed = Number($("compare-seed").value);
    $("compare-run").disabled = true;
    say("compare-message", "generating...", "");
    try {
      const r = await api("POST", "/v1/compare", body);
      const s = r.steered.text;
      const u = r.unsteered.text;
      const at = r.first_divergent_token === null ? null : commonPrefix(s, u);
      paint($("steered-text"), s, at);
      paint($("unsteered-text"), u, at);
      $("divergence").textContent = r.first_divergent_token === null
        ? "identical output"
        : `outputs diverge at token #${r.first_divergent_token} (highlighted)`;
      renderMatched(r.matched);
      const info = r.steered.guardit || {};
      $("abstained").hidden = !info.abstained;
      $("abstained").textContent = info.abstained
        ? `steered arm abstained${info.abstain_reason || info.reason ? `: ${info.abstain_reason || info.reason}` : ""}` : "";
      const how = r.steered.guardit.rechecked
        ? "; the prompt left the gate closed, the unsteered answer opened it (answer re-check)" : "";
      say("compare-message", `${r.steered.usage.completion_tokens} / ${r.unsteered.usage.completion_tokens} tokens${how}`, "ok");
    } catch (err) {
      say("compare-message", explain(err), "error");
    } finally {
      $("compare-run").disabled = false;
    }
  }

  // -- audit ----------------------------------------------------------------------------------
  async function loadAudit(event) {
    if (event) event.preventDefault();
    const filter = $("audit-filter").value.trim();
    const query = `?limit=500${filter ? `&forget_set_id=${encodeURIComponent(filter)}` : ""}`;
    const body = $("audit-table").querySelector("tbody");
    try {
      const data = await api("GET", `/v1/audit${query}`);
      body.replaceChildren();
      for (const e of [...data.entries].reverse()) {
        const tr = document.createElement("tr");
        td(tr, e.id);
        td(tr, fmtTime(e.at));
        td(tr, e.actor, "mono");
        td(tr, e.action, `badge ${e.action}`);
        td(tr, e.forget_set_id, "mono");
        td(tr, e.reason);
        body.appendChild(tr);
      }
      say("audit-message", `${data.entries.length} entr${data.entries.length === 1 ? "y" : "ies"}, newest first`, "ok");
    } catch (err) {
      body.replaceChildren();
      say("audit-message", explain(err), "error");
    }
  }

  // -- wiring ---------------------------------------------------------------------------------
  function useKey(event) {
    if (event) event.preventDefault();
    state.key = $("api-key").value.trim();
    if (state.key) sessionStorage.setItem(KEY_STORE, state.key);
    else sessionStorage.removeItem(KEY_STORE);
    loadSets();
    loadAudit();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("api-key").value = state.key;
    $("key-form").addEventListener("submit", useKey);
    $("forget-key").addEventListener("click", () => { $("api-key").value = ""; useKey(); });
    $("refresh-sets").addEventListener("click", loadSets);
    $("register-form").addEventListener("submit", register);
    $("add-row").addEventListener("click", () => addQaRow());
    for (const radio of document.querySelectorAll('input[name="reg-kind"]')) {
      radio.addEventListener("change", () => {
        const rows = radio.value === "rows" && radio.checked;
        $("reg-rows").hidden = !rows;
        $("reg-jsonl").hidden = rows;
        if (rows && !document.querySelector(".qa-row")) addQaRow();
      });
    }
    $("compare-form").addEventListener("submit", compare);
    $("edit-form").addEventListener("submit", saveEdit);
    $("edit-cancel").addEventListener("click", () => { $("edit-form").hidden = true; });
    $("audit-form").addEventListener("submit", loadAudit);
    checkServer();
    loadSets();
    loadAudit();
  });
})();
