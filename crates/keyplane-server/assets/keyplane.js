// Keyplane's pages: enrolment from an invitation, sign-in (username-first, usernameless and
// passkey autofill), account recovery, the account page and the admin console. Plain JavaScript,
// no inline script (the Content-Security-Policy forbids it). The server renders the pages (askama
// templates); this script runs the WebAuthn ceremonies and the buttons, each a JSON API call. The
// console fills its sections from the admin API and builds that DOM with textContent only.
"use strict";

const b64url = {
  decode(s) {
    const pad = "=".repeat((4 - (s.length % 4)) % 4);
    const bin = atob((s + pad).replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
  },
  encode(buf) {
    const bin = String.fromCharCode(...new Uint8Array(buf));
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
};

// Fallbacks for browsers without PublicKeyCredential.parse*OptionsFromJSON / toJSON.
function creationOptions(json) {
  if (PublicKeyCredential.parseCreationOptionsFromJSON) return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  const o = structuredClone(json);
  o.challenge = b64url.decode(o.challenge);
  o.user.id = b64url.decode(o.user.id);
  (o.excludeCredentials || []).forEach((c) => (c.id = b64url.decode(c.id)));
  return o;
}

function requestOptions(json) {
  if (PublicKeyCredential.parseRequestOptionsFromJSON) return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  const o = structuredClone(json);
  o.challenge = b64url.decode(o.challenge);
  (o.allowCredentials || []).forEach((c) => (c.id = b64url.decode(c.id)));
  return o;
}

function credentialJSON(cred) {
  if (typeof cred.toJSON === "function") return cred.toJSON();
  const r = cred.response;
  const out = { id: cred.id, rawId: b64url.encode(cred.rawId), type: cred.type, clientExtensionResults: cred.getClientExtensionResults(), response: { clientDataJSON: b64url.encode(r.clientDataJSON) } };
  if (r.attestationObject) {
    out.response.attestationObject = b64url.encode(r.attestationObject);
    out.response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    out.response.authenticatorData = b64url.encode(r.authenticatorData);
    out.response.signature = b64url.encode(r.signature);
    if (r.userHandle) out.response.userHandle = b64url.encode(r.userHandle);
  }
  return out;
}

const MESSAGES = {
  enrolment_token_invalid: "This invitation link is unknown, already used or expired. Ask for a new one.",
  ceremony_expired: "That took too long. Please try again.",
  ceremony_not_found: "That attempt was already used. Please try again.",
  origin_mismatch: "This page is not the address your organisation's passkeys belong to.",
  unknown_credential: "This passkey is not registered here.",
  credential_inactive: "This passkey has been suspended or removed. Contact your help desk.",
  user_inactive: "Your account is suspended. Contact your help desk.",
  sign_count_regression: "This passkey looks cloned and has been suspended. Contact your help desk.",
  credential_already_registered: "This passkey is already registered.",
  user_not_verified: "Your device did not verify you (PIN or biometric). Please try again.",
  concurrent_sign_in: "Another sign-in finished at the same moment. Please try again.",
  recovery_code_invalid: "That username and recovery code do not match an unused code.",
  recovery_link_invalid: "This recovery link is not valid any more (used, expired or replaced). Ask the help desk for a new one.",
  recovery_session_used: "This recovery was already used to create a passkey. Sign in with it.",
  rate_limited: "Too many attempts. Please wait a while and try again.",
  policy_denied: "Your organisation's policy does not accept this kind of passkey. Try another device or security key.",
  last_credential: "This is your only passkey: add another before removing it.",
  unauthenticated: "You are not signed in.",
  re_enrolment_required: "This session may only register a new passkey.",
  recently_recovered: "Your account was recovered recently; this is possible again later.",
  step_up_unreachable: "None of your passkeys can confirm this action. Ask your help desk.",
  approver_is_requester: "Dual control: a different administrator must decide your own request.",
  recovery_codes_denied: "Your organisation does not use recovery codes: keep a second passkey instead.",
};

function show(text, kind) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = kind || "";
}

// The session's CSRF token, on pages that act for a signed-in session: written into the page by
// the server (the account page), or read from GET /api/v1/me (the console).
let csrf = document.querySelector('meta[name="csrf-token"]')?.content || null;

// One JSON API request; an error answer becomes an Error with the API's code (and `level` for
// step_up_required) and a message for people.
async function call(method, path, body, token = csrf) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && token) headers["x-csrf-token"] = token;
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  const data = resp.status === 204 ? {} : await resp.json();
  if (!resp.ok) {
    const code = (data.error && data.error.code) || "error";
    const err = new Error(MESSAGES[code] || (data.error && data.error.message) || "Something went wrong.");
    err.code = code;
    err.level = data.error && data.error.level;
    throw err;
  }
  return data;
}

// A POST, with the given CSRF token (a recovery session's, right after it opened).
function api(path, body, token) {
  return call("POST", path, body, token);
}

function browserError(e) {
  if (e && e.name === "NotAllowedError") return "The passkey prompt was cancelled or timed out.";
  if (e && e.name === "InvalidStateError") return "This device already holds a passkey for your account.";
  return e && e.message ? e.message : String(e);
}

async function enrol(event) {
  event.preventDefault();
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!token) return show("This page needs the invitation link you were given.", "error");
  const nickname = document.getElementById("nickname").value.trim();
  try {
    show("Preparing…");
    const start = await api("/api/v1/registration/options", { enrolment_token: token });
    show("Follow your device's prompt…");
    const created = await navigator.credentials.create({ publicKey: creationOptions(start.publicKey) });
    const body = { ceremony: start.ceremony, credential: credentialJSON(created) };
    if (nickname) body.nickname = nickname;
    const stored = await api("/api/v1/registration/verify", body);
    history.replaceState(null, "", location.pathname); // the token is spent; keep it out of history
    show(`Passkey "${stored.nickname}" created. You can now sign in.`, "ok");
  } catch (e) {
    show(browserError(e), "error");
  }
}

let autofill = null;

async function finishSignIn(start, assertion) {
  const session = await api("/api/v1/authentication/verify", { ceremony: start.ceremony, credential: credentialJSON(assertion) });
  show(`Signed in as ${session.user.display_name} (${session.aal}).`, "ok");
  // Sent here by an application (OpenID Connect): back to it through the authorization.
  const pending = document.getElementById("pending");
  if (pending) location.assign(pending.dataset.continue);
}

async function signIn(event) {
  event.preventDefault();
  if (autofill) autofill.abort();
  const username = document.getElementById("username").value.trim();
  try {
    const start = await api("/api/v1/authentication/options", username ? { username } : {});
    show("Follow your device's prompt…");
    const assertion = await navigator.credentials.get({ publicKey: requestOptions(start.publicKey) });
    await finishSignIn(start, assertion);
  } catch (e) {
    show(browserError(e), "error");
  }
}

// Passkey autofill: offer the passkeys for this site in the username field's suggestions.
// The controller exists before the first await, so a click on the button while the options are
// still on their way cancels the autofill request too (it is then refused as soon as it is made).
async function startAutofill() {
  if (!window.PublicKeyCredential || !PublicKeyCredential.isConditionalMediationAvailable) return;
  const controller = new AbortController();
  autofill = controller;
  try {
    if (!(await PublicKeyCredential.isConditionalMediationAvailable())) return;
    const start = await api("/api/v1/authentication/options", {});
    const assertion = await navigator.credentials.get({ publicKey: requestOptions(start.publicKey), mediation: "conditional", signal: controller.signal });
    await finishSignIn(start, assertion);
  } catch (e) {
    if (!controller.signal.aborted) show(browserError(e), "error");
  }
}

// --- the account page -----------------------------------------------------------------------

// An action the policy guards with a step-up: confirm with a passkey, then try once more.
async function withStepUp(action, run) {
  try {
    return await run();
  } catch (e) {
    if (e.code !== "step_up_required") throw e;
    show("Confirm with your passkey to continue…");
    const start = await call("POST", "/api/v1/step-up/options", { action });
    const assertion = await navigator.credentials.get({ publicKey: requestOptions(start.publicKey) });
    await call("POST", "/api/v1/step-up/verify", { ceremony: start.ceremony, credential: credentialJSON(assertion) });
    return await run();
  }
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "never";
}

function kind(c) {
  if (c.backup_state) return "Synced";
  if (c.backup_eligible) return "Can sync";
  return "Device-bound";
}

// The server writes instants in UTC (<time datetime>); show them in the reader's time zone.
function localTimes(root) {
  for (const t of root.querySelectorAll("time[datetime]")) t.textContent = when(t.getAttribute("datetime"));
}

// The account page is rendered by the server; after a change its sections are read again from
// it (parsed inert by DOMParser, never executed) and swapped in, keeping the status line.
const ACCOUNT_SECTIONS = ["recommendation", "passkeys-section", "cases-section", "sessions-section", "sign-ins-section", "codes-status"];

async function refreshAccount() {
  const resp = await fetch("/account", { credentials: "same-origin" });
  const fresh = new DOMParser().parseFromString(await resp.text(), "text/html");
  for (const id of ACCOUNT_SECTIONS) {
    const now = document.getElementById(id);
    const next = fresh.getElementById(id);
    if (now && next) now.replaceWith(document.importNode(next, true));
  }
  localTimes(document);
}

const ACCOUNT_ACTIONS = {
  async rename(b) {
    const nickname = window.prompt("New name for this passkey", b.dataset.nickname);
    if (nickname === null) return;
    await call("PATCH", `/api/v1/me/credentials/${b.dataset.id}`, { nickname: nickname.trim() });
    return `Renamed to "${nickname.trim()}".`;
  },
  async remove(b) {
    if (!window.confirm(`Remove the passkey "${b.dataset.nickname}"? It will no longer sign in to this account.`)) return;
    await call("DELETE", `/api/v1/me/credentials/${b.dataset.id}`);
    return `Removed "${b.dataset.nickname}".`;
  },
  async "add-passkey"() {
    show("Follow your device's prompt…");
    const start = await call("POST", "/api/v1/registration/options", {});
    const created = await navigator.credentials.create({ publicKey: creationOptions(start.publicKey) });
    const stored = await call("POST", "/api/v1/registration/verify", { ceremony: start.ceremony, credential: credentialJSON(created) });
    return `Passkey "${stored.nickname}" added.`;
  },
  async "cancel-case"(b) {
    await call("POST", `/api/v1/me/recovery-cases/${b.dataset.id}/cancel`, {});
    return "The recovery request is cancelled.";
  },
  async "end-others"() {
    const { ended } = await withStepUp("session.end_others", () => call("POST", "/api/v1/me/sessions/end-others", {}));
    return `Signed out ${ended} other session(s).`;
  },
  async "generate-codes"() {
    const { codes } = await withStepUp("recovery.codes.generate", () => call("POST", "/api/v1/me/recovery-codes", {}));
    document.getElementById("codes").textContent = codes.join("\n");
    document.getElementById("codes-shown").hidden = false;
    return "New recovery codes generated.";
  },
  async "sign-out"() {
    await call("POST", "/api/v1/logout", {}).catch(() => {});
    location.assign("/signin");
  },
};

async function accountAction(event) {
  const button = event.target.closest("button[data-action]");
  const action = button && ACCOUNT_ACTIONS[button.dataset.action];
  if (!action) return;
  try {
    const done = await action(button);
    if (done === undefined) return; // cancelled at the browser's prompt, or leaving the page
    show(done, "ok");
    await refreshAccount();
  } catch (e) {
    show(browserError(e), "error");
  }
}

function account() {
  localTimes(document);
  document.querySelector("main").addEventListener("click", accountAction);
}

// --- the admin console ------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// A horizontal stacked bar chart: one row per label, one segment per series. Drawn as SVG with
// the numbers written out, so that it reads without colour too.
function stackedBars(container, title, rows, series) {
  const rowH = 28, labelW = 200, width = 660, barW = width - labelW - 10;
  const height = rows.length * rowH + 30;
  const max = Math.max(1, ...rows.map((r) => series.reduce((n, s) => n + (r.values[s.key] || 0), 0)));
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart-svg" });
  const summary = rows.map((r) => `${r.label}: ${series.map((s) => `${r.values[s.key] || 0} ${s.name}`).join(", ")}`).join("; ");
  svg.append(svgEl("title", {}, title), svgEl("desc", {}, summary));
  svg.setAttribute("aria-label", `${title}. ${summary}`);
  rows.forEach((r, i) => {
    const y = i * rowH;
    svg.append(svgEl("text", { x: 0, y: y + 18, class: "chart-label" }, r.label));
    let x = labelW;
    for (const s of series) {
      const v = r.values[s.key] || 0;
      if (!v) continue;
      const w = (v / max) * barW;
      const rect = svgEl("rect", { x, y: y + 4, width: Math.max(w, 1), height: rowH - 8, class: `seg ${s.cls}` });
      rect.append(svgEl("title", {}, `${r.label}: ${v} ${s.name}`));
      svg.append(rect);
      if (w > 24) svg.append(svgEl("text", { x: x + 4, y: y + 18, class: "chart-value" }, String(v)));
      x += w;
    }
  });
  let lx = labelW;
  for (const s of series) {
    svg.append(svgEl("rect", { x: lx, y: height - 18, width: 12, height: 12, class: `seg ${s.cls}` }));
    svg.append(svgEl("text", { x: lx + 16, y: height - 8, class: "chart-label" }, s.name));
    lx += 24 + s.name.length * 8;
  }
  container.replaceChildren(svg);
}

// Stacked columns per day.
function stackedColumns(container, title, days, series) {
  const width = 640, height = 220, bottom = 40, left = 30;
  const max = Math.max(1, ...days.map((d) => series.reduce((n, s) => n + (d.values[s.key] || 0), 0)));
  const colW = Math.max(4, Math.min(40, (width - left) / Math.max(days.length, 1) - 4));
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart-svg" });
  const summary = days.map((d) => `${d.label}: ${series.map((s) => `${d.values[s.key] || 0} ${s.name}`).join(", ")}`).join("; ") || "no sign-ins";
  svg.append(svgEl("title", {}, title), svgEl("desc", {}, summary));
  svg.setAttribute("aria-label", `${title}. ${summary}`);
  svg.append(svgEl("text", { x: 0, y: 12, class: "chart-label" }, String(max)));
  days.forEach((d, i) => {
    const x = left + i * (colW + 4);
    let y = height - bottom;
    for (const s of series) {
      const v = d.values[s.key] || 0;
      if (!v) continue;
      const h = (v / max) * (height - bottom - 20);
      y -= h;
      const rect = svgEl("rect", { x, y, width: colW, height: Math.max(h, 1), class: `seg ${s.cls}` });
      rect.append(svgEl("title", {}, `${d.label}: ${v} ${s.name}`));
      svg.append(rect);
    }
    if (days.length <= 10 || i % Math.ceil(days.length / 10) === 0) {
      svg.append(svgEl("text", { x, y: height - bottom + 14, class: "chart-label small" }, d.label.slice(5)));
    }
  });
  let lx = left;
  for (const s of series) {
    svg.append(svgEl("rect", { x: lx, y: height - 16, width: 12, height: 12, class: `seg ${s.cls}` }));
    svg.append(svgEl("text", { x: lx + 16, y: height - 6, class: "chart-label" }, s.name));
    lx += 70;
  }
  container.replaceChildren(svg);
}

async function loadDashboard() {
  let cov;
  try {
    cov = await withStepUp("admin.reports.read", () => call("GET", "/api/v1/admin/reports/coverage?days=30"));
  } catch (e) {
    if (e.code === "forbidden_role") return; // this role does not read reports
    throw e;
  }
  document.getElementById("coverage-section").hidden = false;
  const pops = Object.entries(cov.populations).map(([label, c]) => ({ label: label === "(all)" ? "All users" : label, c }));
  stackedBars(document.getElementById("chart-coverage"), "Users by compliant passkeys",
    pops.map((p) => ({ label: p.label, values: { none: p.c.users_without_compliant, one: p.c.users_with_one_compliant, two: p.c.users_with_two_or_more_compliant } })),
    [{ key: "none", name: "none", cls: "bad" }, { key: "one", name: "one", cls: "warn" }, { key: "two", name: "two or more", cls: "good" }]);
  stackedBars(document.getElementById("chart-kinds"), "Passkeys by kind",
    pops.map((p) => ({ label: p.label, values: { synced: p.c.synced, bound: p.c.device_bound } })),
    [{ key: "synced", name: "synced", cls: "s1" }, { key: "bound", name: "device-bound", cls: "s2" }]);
  const all = (cov.populations["(all)"] || { models: {} }).models;
  const models = Object.entries(all).sort((a, b) => b[1] - a[1]).slice(0, 8);
  stackedBars(document.getElementById("chart-models"), "Passkeys by authenticator model",
    models.map(([label, n]) => ({ label: label.length > 26 ? `${label.slice(0, 25)}…` : label, values: { n } })),
    [{ key: "n", name: "passkeys", cls: "s1" }]);
  document.getElementById("sign-ins-window").textContent = `The last ${cov.window_days} days, per day (UTC).`;
  stackedColumns(document.getElementById("chart-sign-ins"), "Sign-ins per day by level",
    Object.entries(cov.sign_ins_by_day || {}).map(([label, values]) => ({ label, values })),
    [{ key: "aal1", name: "AAL1", cls: "s3" }, { key: "aal2", name: "AAL2", cls: "s1" }, { key: "aal3", name: "AAL3", cls: "good" }]);
}

async function loadApprovals() {
  let list;
  try {
    list = await withStepUp("admin.approvals.read", () => call("GET", "/api/v1/admin/approvals"));
  } catch (e) {
    if (e.code === "forbidden_role") return;
    throw e;
  }
  const open = list.approvals.filter((a) => a.status === "requested");
  document.getElementById("approvals-section").hidden = false;
  const ul = document.getElementById("approvals");
  ul.replaceChildren();
  if (!open.length) ul.append(el("li", "Nothing waiting."));
  for (const a of open) {
    const li = el("li");
    li.dataset.id = a.id;
    li.append(el("p", a.summary), el("p", `${a.action} · asked by ${a.requested_by} · expires ${when(a.expires_at)}`, "muted"));
    for (const [label, verb, cls] of may("approvals.decide") ? [["Approve", "approve", ""], ["Deny", "deny", "danger"]] : []) {
      const b = el("button", label, cls);
      b.type = "button";
      b.addEventListener("click", async () => {
        try {
          await withStepUp("admin.approvals.decide", () => call("POST", `/api/v1/admin/approvals/${a.id}/${verb}`, verb === "deny" ? { note: "denied from the console" } : undefined));
          show(`${label === "Approve" ? "Approved" : "Denied"}: ${a.summary}`, "ok");
          await loadApprovals();
        } catch (e) {
          show(browserError(e), "error");
        }
      });
      li.append(b, " ");
    }
    ul.append(li);
  }
}

let me_id = null;
let permissions = new Set();
const may = (p) => permissions.has(p);

async function caseAction(c, action, body, permission, done) {
  try {
    const after = await withStepUp(`admin.${permission}`, () => call("POST", `/api/v1/admin/recovery-cases/${c.id}/${action}`, body));
    show(done(after), "ok");
    await loadCasesQueue();
  } catch (e) {
    show(browserError(e), "error");
  }
}

function caseButton(li, label, cls, handler) {
  const b = el("button", label, cls);
  b.type = "button";
  b.addEventListener("click", handler);
  li.append(b, " ");
}

async function loadCasesQueue() {
  let list;
  try {
    list = await withStepUp("admin.users.read", () => call("GET", "/api/v1/admin/recovery-cases?open=true"));
  } catch (e) {
    if (e.code === "forbidden_role") return;
    throw e;
  }
  document.getElementById("cases-section").hidden = false;
  const ul = document.getElementById("cases");
  ul.replaceChildren();
  if (!list.cases.length) ul.append(el("li", "No open recovery cases."));
  for (const c of list.cases) {
    const li = el("li");
    li.dataset.user = c.user_id;
    li.dataset.state = c.state;
    const title = el("p");
    title.append(el("strong", c.state.replace(/_/g, " ")), " ");
    if (c.on_hold) title.append(el("span", "fraud hold", "badge bad-text"));
    li.append(title, el("p", `User ${c.user_id} · opened ${when(c.created_at)} by ${c.opened_by}${c.missing_checks.length ? ` · checks to go: ${c.missing_checks.join(", ")}` : ""}`, "muted"));
    for (const h of c.holds) li.append(el("p", `${h.signal}: ${h.detail}`, "muted"));
    const manage = may("users.manage");
    if (c.state === "requested" && manage) {
      caseButton(li, "Take", "", () => caseAction(c, "take", {}, "users.manage", () => "You are verifying this case."));
    }
    if (c.state === "verifying" && c.agent === me_id && manage) {
      for (const check of c.missing_checks) {
        caseButton(li, `Record ${check.replace(/_/g, " ")}`, "secondary", () => {
          const evidence = window.prompt(`What did you see for "${check}"? (evidence)`);
          if (evidence === null) return;
          caseAction(c, "check", { check, passed: true, evidence }, "users.manage", () => `Recorded ${check}.`);
        });
      }
      if (!c.missing_checks.length) {
        caseButton(li, "Identity verified", "", () => caseAction(c, "verified", {}, "users.manage", (a) => `The case is ${a.state.replace(/_/g, " ")}.`));
      }
    }
    if (c.on_hold && may("fraud.resolve")) {
      caseButton(li, "Release hold", "secondary", () => {
        const note = window.prompt("Review note (what you checked in the timeline)");
        if (note === null) return;
        caseAction(c, "review", { note }, "fraud.resolve", () => "Hold released.");
      });
    }
    if (c.state === "ready" && !c.on_hold && manage) {
      caseButton(li, "Send a new link", "secondary", () => caseAction(c, "send-link", {}, "users.manage", () => "A new recovery link goes to the user's verified contact."));
    }
    if (manage) caseButton(li, "Deny", "danger", () => {
      const reason = window.prompt("Reason to deny this case");
      if (reason === null) return;
      caseAction(c, "deny", { reason }, "users.manage", () => "The case is denied.");
    });
    ul.append(li);
  }
}

// Lifecycle actions need a reason, asked with the browser's prompt; the step-up the policy asks
// for admin acts is done on the spot.
async function userAction(u, action, permission) {
  const reason = window.prompt(`Reason to ${action.replace("-", " ")} ${u.username}`);
  if (reason === null) return;
  try {
    const updated = await withStepUp(`admin.${permission}`, () => call("POST", `/api/v1/admin/users/${u.id}/${action}`, { reason }));
    show(`${updated.username} is ${updated.status}${updated.re_enrolment_required ? " (re-enrolment required)" : ""}.`, "ok");
    await searchUsers();
  } catch (e) {
    show(browserError(e), "error");
  }
}

async function openCaseFor(u) {
  try {
    const c = await withStepUp("admin.users.manage", () => call("POST", "/api/v1/admin/recovery-cases", { user_id: u.id }));
    show(`Recovery case opened for ${u.username}${c.on_hold ? " (held for fraud review)" : ""}.`, "ok");
    await loadCasesQueue();
  } catch (e) {
    show(browserError(e), "error");
  }
}

async function searchUsers(event) {
  if (event) event.preventDefault();
  const params = new URLSearchParams();
  const q = document.getElementById("users-q").value.trim();
  const status = document.getElementById("users-status").value;
  if (q) params.set("q", q);
  if (status) params.set("status", status);
  params.set("limit", "50");
  let list;
  try {
    list = await withStepUp("admin.users.read", () => call("GET", `/api/v1/admin/users?${params}`));
  } catch (e) {
    if (e.code === "forbidden_role") return;
    show(browserError(e), "error");
    return;
  }
  document.getElementById("users-section").hidden = false;
  document.getElementById("users-total").textContent = `${list.total} user(s)${list.total > list.users.length ? `, the first ${list.users.length} shown` : ""}.`;
  const ul = document.getElementById("users");
  ul.replaceChildren();
  for (const u of list.users) {
    const li = el("li");
    li.dataset.username = u.username;
    const title = el("p");
    title.append(el("strong", u.username), " ", el("span", u.status, u.status === "active" ? "badge" : "badge bad-text"));
    if (u.role) title.append(" ", el("span", u.role, "badge"));
    li.append(title, el("p", `${u.display_name} · since ${when(u.created_at)}${u.contact_email ? ` · ${u.contact_email}` : ""}`, "muted"));
    const actions = (u.status === "active"
      ? [["Suspend", "suspend", "users.suspend", "danger"], ["Require re-enrolment", "re-enrol", "users.manage", "secondary"]]
      : u.status === "suspended" ? [["Reactivate", "reactivate", "users.suspend", ""]] : []).filter((a) => may(a[2]));
    for (const [label, action, permission, cls] of actions) {
      const b = el("button", label, cls);
      b.type = "button";
      b.addEventListener("click", () => userAction(u, action, permission));
      li.append(b, " ");
    }
    if (u.status === "active" && may("users.manage")) {
      const b = el("button", "Open a recovery case", "secondary");
      b.type = "button";
      b.addEventListener("click", () => openCaseFor(u));
      li.append(b);
    }
    ul.append(li);
  }
}

async function optional(permission, path) {
  try {
    return await withStepUp(`admin.${permission}`, () => call("GET", path));
  } catch (e) {
    if (e.code === "forbidden_role") return null;
    throw e;
  }
}

async function credentialAction(c, action) {
  const reason = window.prompt(`Reason to ${action === "lost" ? "mark lost" : action} the passkey "${c.nickname}"`);
  if (reason === null) return;
  try {
    await withStepUp("admin.credentials.manage", () => call("POST", `/api/v1/admin/credentials/${c.id}/${action}`, { reason }));
    const done = { suspend: "suspended", reactivate: "reactivated", revoke: "revoked", lost: "marked lost" }[action];
    show(`"${c.nickname}": ${done}.`, "ok");
    await searchCredentials();
  } catch (e) {
    show(browserError(e), "error");
  }
}

async function searchCredentials(event) {
  if (event) event.preventDefault();
  const params = new URLSearchParams(document.getElementById("creds-filter").value);
  const username = document.getElementById("creds-user").value.trim();
  if (username) params.set("username", username);
  params.set("limit", "50");
  const list = await optional("credentials.read", `/api/v1/admin/credentials?${params}`);
  if (!list) return;
  document.getElementById("creds-section").hidden = false;
  document.getElementById("bulk").hidden = !may("credentials.bulk");
  document.getElementById("creds-total").textContent = `${list.total} passkey(s)${list.total > list.credentials.length ? `, the first ${list.credentials.length} shown` : ""}.`;
  const ul = document.getElementById("creds");
  ul.replaceChildren();
  for (const c of list.credentials) {
    const li = el("li");
    li.dataset.id = c.id;
    const title = el("p");
    li.dataset.user = c.user;
    title.append(el("strong", c.nickname), " ", el("span", kind(c), "badge"), " ", el("span", c.status, c.status === "active" ? "badge" : "badge bad-text"));
    li.append(title, el("p", `${(c.authenticator && c.authenticator.name) || c.aaguid} · user ${c.user} · added ${when(c.created_at)} · last used ${when(c.last_used_at)}`, "muted"));
    const actions = c.status === "active" ? [["Suspend", "suspend", "secondary"], ["Mark lost", "lost", "danger"], ["Revoke", "revoke", "danger"]]
      : c.status === "suspended" ? [["Reactivate", "reactivate", ""], ["Revoke", "revoke", "danger"]] : [];
    for (const [label, action, cls] of may("credentials.manage") ? actions : []) {
      const b = el("button", label, cls);
      b.type = "button";
      b.addEventListener("click", () => credentialAction(c, action));
      li.append(b, " ");
    }
    ul.append(li);
  }
}

// The passkey search as a bulk filter (the API's CredentialFilter).
function bulkFilter() {
  const f = {};
  const username = document.getElementById("creds-user").value.trim();
  if (username) f.username = username;
  const extra = new URLSearchParams(document.getElementById("creds-filter").value);
  if (extra.has("non_compliant")) f.non_compliant = true;
  if (extra.has("synced")) f.synced = extra.get("synced") === "true";
  if (extra.has("status")) f.status = extra.get("status");
  return f;
}

async function bulk(dryRun) {
  const action = document.getElementById("bulk-action").value;
  const body = { action, filter: bulkFilter(), dry_run: dryRun };
  if (!dryRun) {
    const reason = window.prompt(`Reason to ${action} every matching passkey`);
    if (reason === null) return;
    body.reason = reason;
  }
  try {
    const r = await withStepUp("admin.credentials.bulk", () => call("POST", "/api/v1/admin/credentials/bulk", body));
    const out = document.getElementById("bulk-result");
    if (r.dry_run) out.textContent = `${r.preview.count} passkey(s) would be ${action === "reactivate" ? "reactivated" : `${action === "suspend" ? "suspended" : "revoked"}`}.`;
    else if (r.status === "awaiting_approval") out.textContent = "The bulk action waits for a second administrator's approval.";
    else out.textContent = `Bulk job ${r.job.id}: ${r.job.done ?? 0} of ${r.job.total} done (it continues in the background).`;
    show("Bulk action: see below.", "ok");
    if (!dryRun) await Promise.all([searchCredentials(), loadApprovals()]);
  } catch (e) {
    show(browserError(e), "error");
  }
}

async function loadCampaigns() {
  const list = await optional("campaigns.read", "/api/v1/admin/campaigns");
  if (!list) return;
  document.getElementById("campaigns-section").hidden = false;
  document.getElementById("campaign-form").hidden = !may("campaigns.manage");
  const ul = document.getElementById("campaigns");
  ul.replaceChildren();
  if (!list.campaigns.length) ul.append(el("li", "No campaigns."));
  for (const c of list.campaigns) {
    const li = el("li");
    li.dataset.aaguid = c.aaguid;
    const title = el("p");
    title.append(el("strong", c.model || c.aaguid), " ", el("span", c.status, "badge"), " ", el("span", c.action.replace("_", "-"), "badge"));
    li.append(title, el("p", `${c.re_enrolled} of ${c.affected} user(s) re-enrolled, ${c.remaining} to go · ${c.reason} · started ${when(c.started_at)} by ${c.started_by}`, "muted"));
    if (c.status === "open" && may("campaigns.manage")) {
      caseButton(li, "Close", "secondary", async () => {
        const reason = window.prompt("Why close this campaign?");
        if (reason === null) return;
        try {
          await withStepUp("admin.campaigns.manage", () => call("POST", `/api/v1/admin/campaigns/${c.id}/close`, { reason }));
          show("Campaign closed.", "ok");
          await loadCampaigns();
        } catch (e) {
          show(browserError(e), "error");
        }
      });
    }
    ul.append(li);
  }
}

async function startCampaign(event) {
  event.preventDefault();
  try {
    const c = await withStepUp("admin.campaigns.manage", () => call("POST", "/api/v1/admin/campaigns", {
      aaguid: document.getElementById("campaign-aaguid").value.trim(),
      reason: document.getElementById("campaign-reason").value.trim(),
      action: document.getElementById("campaign-action").value,
    }));
    show(`Campaign started: ${c.marked ?? c.affected} user(s) marked for re-enrolment.`, "ok");
    await loadCampaigns();
  } catch (e) {
    show(browserError(e), "error");
  }
}

async function loadExceptions() {
  const list = await optional("exceptions.read", "/api/v1/admin/exceptions");
  if (!list) return;
  document.getElementById("exceptions-section").hidden = false;
  document.getElementById("exception-form").hidden = !may("exceptions.request");
  const ul = document.getElementById("exceptions");
  ul.replaceChildren();
  if (!list.exceptions.length) ul.append(el("li", "No exceptions."));
  for (const e of list.exceptions) {
    const li = el("li");
    const who = e.subject ? `${e.subject.type} ${e.subject.id}` : "?";
    li.append(el("p", `${e.rule} waived for ${who}`), el("p", `${e.status} · until ${when(e.expires_at)} · ${e.reason}`, "muted"));
    ul.append(li);
  }
}

function showSecret(secret) {
  document.getElementById("client-secret-value").textContent = secret;
  document.getElementById("client-secret").hidden = false;
}

async function loadClients() {
  const list = await optional("clients.read", "/api/v1/admin/clients");
  if (!list) return;
  document.getElementById("clients-section").hidden = false;
  document.getElementById("client-form").hidden = !may("clients.manage");
  const ul = document.getElementById("clients");
  ul.replaceChildren();
  if (!list.clients.length) ul.append(el("li", "No machine clients."));
  for (const c of list.clients) {
    const li = el("li");
    li.dataset.name = c.name;
    const title = el("p");
    title.append(el("strong", c.name), " ", el("span", c.status, c.status === "active" ? "badge" : "badge bad-text"));
    for (const f of c.findings || []) title.append(" ", el("span", f.replace(/_/g, " "), "badge bad-text"));
    const what = { oidc_client: "OpenID Connect application", webhook: "webhook endpoint" }[c.kind] || `${c.kind === "scim_token" ? "SCIM token, " : ""}scopes ${(c.scopes || []).join(", ")}`;
    li.append(title, el("p", `owner ${c.owner_username || c.owner} · ${what} · expires ${when(c.expires_at)}`, "muted"));
    if (c.status === "active" && may("clients.manage")) {
      caseButton(li, "Rotate the secret", "secondary", async () => {
        try {
          const r = await withStepUp("admin.clients.manage", () => call("POST", `/api/v1/admin/clients/${c.id}/rotate`, {}));
          showSecret(r.secret);
          show(`New secret for ${c.name}; the previous one works until ${when(r.client.previous_secret_expires_at)}.`, "ok");
          await loadClients();
        } catch (e) {
          show(browserError(e), "error");
        }
      });
      caseButton(li, "Revoke", "danger", async () => {
        const reason = window.prompt(`Reason to revoke ${c.name}`);
        if (reason === null) return;
        try {
          await withStepUp("admin.clients.manage", () => call("POST", `/api/v1/admin/clients/${c.id}/revoke`, { reason }));
          show(`${c.name} is revoked.`, "ok");
          await loadClients();
        } catch (e) {
          show(browserError(e), "error");
        }
      });
    }
    ul.append(li);
  }
}

const commaList = (id) => document.getElementById(id).value.split(",").map((x) => x.trim()).filter(Boolean);

// The new-client form shows the fields of the chosen kind only.
function clientKindChanged() {
  const kind = document.getElementById("client-kind").value;
  for (const part of document.querySelectorAll("#client-form [data-kind]")) part.hidden = !part.dataset.kind.split(" ").includes(kind);
}

async function createClient(event) {
  event.preventDefault();
  const kind = document.getElementById("client-kind").value;
  const body = {
    kind,
    name: document.getElementById("client-name").value.trim(),
    owner: me_id,
    scopes: kind === "api_token" || kind === "scim_token" ? commaList("client-scopes") : [],
    expires_days: Number(document.getElementById("client-days").value),
  };
  if (kind === "oidc_client") body.oidc = { redirect_uris: commaList("client-redirects"), scopes: commaList("client-oidc-scopes") };
  if (kind === "webhook") body.webhook = { url: document.getElementById("client-webhook-url").value.trim(), event_types: commaList("client-events") };
  try {
    const r = await withStepUp("admin.clients.manage", () => call("POST", "/api/v1/admin/clients", body));
    if (r.secret) {
      showSecret(r.secret);
      show(`Machine client ${r.client.name} created.`, "ok");
    } else {
      show("The new client waits for a second administrator's approval.", "ok");
      await loadApprovals();
    }
    await loadClients();
  } catch (e) {
    show(browserError(e), "error");
  }
}

async function loadFraud() {
  const list = await optional("fraud.read", "/api/v1/admin/fraud-alerts");
  if (!list) return;
  document.getElementById("fraud-section").hidden = false;
  const ul = document.getElementById("fraud");
  ul.replaceChildren();
  const open = list.alerts.filter((a) => a.status === "open");
  if (!open.length) ul.append(el("li", "No open fraud alerts."));
  for (const a of open) {
    const li = el("li");
    li.append(el("p", `${a.kind.replace(/_/g, " ")} · user ${a.user_id}`), el("p", `opened ${when(a.opened_at)} · passkey ${a.credential_id || "-"}`, "muted"));
    if (may("fraud.resolve")) {
      for (const [label, resolution, cls] of [["Revoke the passkey", "revoke", "danger"], ["False alarm: reactivate", "reactivate", "secondary"]]) {
        caseButton(li, label, cls, async () => {
          const note = window.prompt("Note (what you found)");
          if (note === null) return;
          try {
            await withStepUp("admin.fraud.resolve", () => call("POST", `/api/v1/admin/fraud-alerts/${a.id}/resolve`, { resolution, note }));
            show("Alert resolved.", "ok");
            await loadFraud();
          } catch (e) {
            show(browserError(e), "error");
          }
        });
      }
    }
    ul.append(li);
  }
}

async function requestException(event) {
  event.preventDefault();
  const username = document.getElementById("exception-user").value.trim();
  try {
    const found = await call("GET", `/api/v1/admin/users?q=${encodeURIComponent(username)}&limit=1000`);
    const user = found.users.find((u) => u.username === username.toLowerCase());
    if (!user) throw Object.assign(new Error(`No user ${username}.`), { code: "user_not_found" });
    await withStepUp("admin.exceptions.request", () => call("POST", "/api/v1/admin/exceptions", {
      subject: { type: "user", id: user.id },
      rule: document.getElementById("exception-rule").value.trim(),
      reason: document.getElementById("exception-reason").value.trim(),
      duration_days: Number(document.getElementById("exception-days").value),
    }));
    show("Asked: a different administrator approves it in Approvals waiting.", "ok");
    await loadApprovals();
  } catch (e) {
    show(browserError(e), "error");
  }
}

async function showReport() {
  const name = document.getElementById("report-name").value;
  try {
    const r = await withStepUp("admin.reports.read", () => call("GET", `/api/v1/admin/reports/${name}`));
    document.getElementById("report").textContent = JSON.stringify(r, null, 2);
  } catch (e) {
    show(browserError(e), "error");
  }
}

function showResult(text) {
  document.getElementById("policy-result").textContent = text;
}

function lintText(r) {
  return r.valid ? `Valid. Populations: ${(r.populations || []).join(", ") || "none"}; ${r.step_up_rules} step-up rule(s).`
    : r.errors.map((e) => `line ${e.line}, column ${e.column}: ${e.path ? `${e.path}: ` : ""}${e.message}`).join("\n");
}

async function policyCall(path, render, permission) {
  const document_ = document.getElementById("policy-doc").value;
  try {
    const r = await withStepUp(`admin.${permission}`, () => call("POST", path, { document: document_ }));
    showResult(render(r));
    return r;
  } catch (e) {
    if (e.code === "policy_invalid") showResult("The document has problems; lint it to see them.");
    show(browserError(e), "error");
    return null;
  }
}

async function loadPolicy() {
  const p = await optional("policy.read", "/api/v1/admin/policy");
  if (!p) return;
  document.getElementById("policy-section").hidden = false;
  document.getElementById("policy-version").textContent = p.builtin ? "The built-in policy is in force (no document applied yet)." : `Version ${p.version}, applied ${when(p.created_at)} by ${p.created_by}.`;
  document.getElementById("policy-doc").value = p.document || "version = 1\n";
  document.getElementById("policy-lint").onclick = () => policyCall("/api/v1/admin/policy/lint", lintText, "policy.read");
  document.getElementById("policy-diff").onclick = () => policyCall("/api/v1/admin/policy/diff", (r) => (r.changed ? r.diff : "No change."), "policy.read");
  document.getElementById("policy-simulate").onclick = () => policyCall("/api/v1/admin/policy/simulate", (r) => Object.entries(r.populations).map(([pop, x]) =>
    `${pop}: ${x.users} user(s), ${x.credentials} passkey(s); ${x.credentials_becoming_non_compliant} would stop complying, ${x.credentials_becoming_compliant} would start; ${x.users_losing_every_compliant_credential} user(s) would lose every compliant passkey`).join("\n"), "policy.read");
  document.getElementById("policy-apply").hidden = !may("policy.apply");
  document.getElementById("policy-apply").onclick = async () => {
    if (!window.confirm("Apply this policy to the tenant now?")) return;
    const r = await policyCall("/api/v1/admin/policy/apply", (x) => (x.status === "applied" ? `Applied as version ${x.version}.` : "Waiting for a second administrator's approval."), "policy.apply");
    if (r) {
      show(r.status === "applied" ? `Policy version ${r.version} applied.` : "The change waits for approval.", "ok");
      await loadApprovals();
    }
  };
}

async function verifyAudit(full) {
  const r = await optional("audit.read", `/api/v1/audit/verify${full ? "?full=true" : ""}`);
  if (!r) return false;
  const p = document.getElementById("audit-verify");
  p.className = r.ok ? "ok-text" : "bad-text";
  p.textContent = r.ok
    ? `Chain intact: ${r.events_checked} event(s) checked ${r.started_after ? `after checkpoint ${r.started_after}` : "from the first"}, up to ${r.last_seq}; ${r.checkpoints_valid} signed checkpoint(s) valid.`
    : `Chain broken: ${r.problems.map((x) => x.message).join("; ")}`;
  return true;
}

async function loadAudit() {
  if (!(await verifyAudit(false))) return;
  document.getElementById("audit-section").hidden = false;
  document.getElementById("audit-verify-button").onclick = () =>
    verifyAudit(true).then(loadAuditEvents).catch((e) => show(browserError(e), "error"));
  await loadAuditEvents();
}

async function loadAuditEvents() {
  // The newest events: find the end of the log, then read its last page.
  const first = await call("GET", "/api/v1/audit/events?limit=1");
  let after = 0;
  let page = first;
  while (page.next_after_seq !== null && page.next_after_seq !== undefined) {
    after = page.next_after_seq;
    page = await call("GET", `/api/v1/audit/events?after_seq=${after}&limit=1000`);
    if (page.events.length < 1000) break;
  }
  const last = page.events.length ? page.events : first.events;
  const ul = document.getElementById("audit");
  ul.replaceChildren();
  for (const e of last.slice(-25).reverse()) {
    const li = el("li");
    li.append(el("p", `#${e.seq} ${e.action}${e.outcome !== "success" ? ` (${e.outcome})` : ""}`), el("p", `${when(e.time)} · ${e.actor.type}:${e.actor.id} → ${e.target.type} ${e.target.id}`, "muted"));
    ul.append(li);
  }
}

async function admin() {
  let me;
  try {
    me = await call("GET", "/api/v1/me");
  } catch (e) {
    document.getElementById("who").replaceChildren("You are not signed in. ", Object.assign(el("a", "Sign in"), { href: "/signin" }));
    return;
  }
  csrf = me.csrf_token || null;
  me_id = me.user.id;
  permissions = new Set(me.permissions || []);
  if (!me.user.role) {
    document.getElementById("who").textContent = "Your account has no administrative role.";
    return;
  }
  document.getElementById("who").textContent = `Signed in as ${me.user.display_name} (${me.user.role}).`;
  document.getElementById("users-form").addEventListener("submit", searchUsers);
  document.getElementById("creds-form").addEventListener("submit", (e) => searchCredentials(e).catch((x) => show(browserError(x), "error")));
  document.getElementById("exception-form").addEventListener("submit", requestException);
  document.getElementById("client-form").addEventListener("submit", createClient);
  document.getElementById("client-kind").addEventListener("change", clientKindChanged);
  document.getElementById("report-show").addEventListener("click", showReport);
  document.getElementById("bulk-preview").addEventListener("click", () => bulk(true));
  document.getElementById("bulk-run").addEventListener("click", () => bulk(false));
  document.getElementById("campaign-form").addEventListener("submit", startCampaign);
  document.getElementById("reports-section").hidden = !may("reports.read");
  for (const load of [loadDashboard, () => searchUsers(), loadApprovals, loadCasesQueue, () => searchCredentials(), loadFraud, loadCampaigns, loadExceptions, loadClients, loadPolicy, loadAudit]) {
    try {
      await load();
    } catch (e) {
      show(browserError(e), "error");
    }
  }
}

// Recovery: a recovery code or a help-desk link opens a recovery session (cookies), which may only
// register a passkey; registering ends it.
async function registerWithRecovery(session) {
  show("Follow your device's prompt…");
  const start = await api("/api/v1/registration/options", {}, session.csrf_token);
  const created = await navigator.credentials.create({ publicKey: creationOptions(start.publicKey) });
  const stored = await api("/api/v1/registration/verify", { ceremony: start.ceremony, credential: credentialJSON(created), nickname: "Recovered passkey" }, session.csrf_token);
  show(`Passkey "${stored.nickname}" created. Your account is recovered: sign in with it.`, "ok");
}

async function recoverWithCode(event) {
  event.preventDefault();
  const username = document.getElementById("code-username").value.trim();
  const code = document.getElementById("code").value.trim();
  try {
    show("Checking the code…");
    const session = await api("/api/v1/recovery/codes/redeem", { username, code });
    document.getElementById("code").value = "";
    await registerWithRecovery(session);
  } catch (e) {
    show(browserError(e), "error");
  }
}

async function recoverWithLink() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  try {
    show("Checking the link…");
    const session = await api("/api/v1/recovery/links/redeem", { token });
    history.replaceState(null, "", location.pathname); // the link is spent; keep it out of history
    await registerWithRecovery(session);
  } catch (e) {
    show(browserError(e), "error");
  }
}

async function askHelpDesk(event) {
  event.preventDefault();
  const username = document.getElementById("case-username").value.trim();
  try {
    const reply = await api("/api/v1/recovery/cases", { username });
    show(reply.message, "ok");
  } catch (e) {
    show(browserError(e), "error");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  if (!window.PublicKeyCredential) {
    show("This browser does not support passkeys.", "error");
    return;
  }
  const page = document.body.dataset.page;
  if (page === "enrol") document.getElementById("enrol-form").addEventListener("submit", enrol);
  if (page === "account") account();
  if (page === "admin") admin();
  if (page === "recover") {
    if (new URLSearchParams(location.hash.slice(1)).get("token")) {
      document.getElementById("link-section").hidden = false;
      document.getElementById("link-button").addEventListener("click", recoverWithLink);
    }
    document.getElementById("code-form").addEventListener("submit", recoverWithCode);
    document.getElementById("case-form").addEventListener("submit", askHelpDesk);
  }
  if (page === "signin") {
    document.getElementById("signin-form").addEventListener("submit", signIn);
    startAutofill();
  }
});
