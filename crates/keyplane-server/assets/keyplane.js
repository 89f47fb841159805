// Keyplane's pages: enrolment from an invitation and sign-in (username-first, usernameless and
// passkey autofill). Plain JavaScript, no inline script (the Content-Security-Policy forbids it).
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
};

function show(text, kind) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = kind || "";
}

async function api(path, body, csrf) {
  const headers = { "content-type": "application/json" };
  if (csrf) headers["x-csrf-token"] = csrf;
  const resp = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
  const data = resp.status === 204 ? {} : await resp.json();
  if (!resp.ok) {
    const code = (data.error && data.error.code) || "error";
    const err = new Error(MESSAGES[code] || (data.error && data.error.message) || "Something went wrong.");
    err.code = code;
    throw err;
  }
  return data;
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
