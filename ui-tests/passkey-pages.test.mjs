// Real-browser tests of Keyplane's pages — /enrol, /signin, /account, /admin and /recover:
// headless Chromium (Debian's package) driven by playwright-core, with the DevTools virtual
// WebAuthn authenticator standing in for the user's device. Run by
// crates/keyplane-server/tests/browser.rs, which starts a fresh server and a real SMTP server
// (aiosmtpd), prepares the users and hands over in environment variables:
//
//   KEYPLANE_UI_BASE, KEYPLANE_UI_TOKEN (alice's invitation), KEYPLANE_UI_USERNAME (alice, an
//   administrator), KEYPLANE_UI_RECOVERY_USERNAME / _CODE (rita and one of her recovery codes),
//   KEYPLANE_UI_RECOVERY_LINK (a ready case's link for rob), KEYPLANE_UI_CASE_USERNAME (cara, whose
//   case the console works through), KEYPLANE_UI_MAILDIR (where her email lands) and
//   KEYPLANE_UI_OIDC_CLIENT with KEYPLANE_UI_OIDC_REDIRECT (an OpenID Connect client, "Team
//   wiki", and its callback on a free loopback port, which this file serves itself).
//
// The tests share one browser tab (the virtual authenticator, and the passkey the first test
// creates on it, belong to that tab) and run in file order: enrol first, then sign in, and so on.
// KEYPLANE_UI_SCREENSHOTS=DIR saves DIR/keyplane-{enrol,signin,signin-phone,account,admin,
// admin-more,recover}.png.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { createRequire } from "node:module";

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (see the top of passkey-pages.test.mjs)`);
  return value;
}

const BASE = required("KEYPLANE_UI_BASE").replace(/\/$/, "");
const TOKEN = required("KEYPLANE_UI_TOKEN");
const USERNAME = required("KEYPLANE_UI_USERNAME");
const RECOVERY_USERNAME = required("KEYPLANE_UI_RECOVERY_USERNAME");
const RECOVERY_CODE = required("KEYPLANE_UI_RECOVERY_CODE");
const RECOVERY_LINK = `${BASE}/recover#token=${required("KEYPLANE_UI_RECOVERY_LINK")}`;
const CASE_USERNAME = required("KEYPLANE_UI_CASE_USERNAME");
const MAILDIR = required("KEYPLANE_UI_MAILDIR");
const OIDC_CLIENT = required("KEYPLANE_UI_OIDC_CLIENT");
const OIDC_REDIRECT = required("KEYPLANE_UI_OIDC_REDIRECT");
const CHROMIUM = process.env.KEYPLANE_UI_CHROMIUM || "/usr/bin/chromium";
const SCREENSHOTS = process.env.KEYPLANE_UI_SCREENSHOTS || "";
const ENROL_LINK = `${BASE}/enrol#token=${TOKEN}`;
const NICKNAME = "Browser passkey";
const AXE_SOURCE = await readFile(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const WAIT = 15_000; // for any one thing the page should do; normally well under a second

// The flags DEVELOPERS.md lists; the profile directory is passed to launchPersistentContext.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let profileDir;
let context;
let page;
let cdp;
let authenticatorId;
const AUTHENTICATOR = {
  protocol: "ctap2",
  transport: "internal",
  hasResidentKey: true,
  hasUserVerification: true,
  isUserVerified: true,
  automaticPresenceSimulation: true,
};
const cspViolations = []; // from a `securitypolicyviolation` listener installed in every document
let onCspViolation = () => {};
const pageErrors = []; // uncaught exceptions in the pages
const consoleErrors = [];
const apiRequests = []; // { path, body } of every /api/ request the pages send
const assertedCredentials = []; // WebAuthn.credentialAsserted events

before(async () => {
  profileDir = await mkdtemp(join(tmpdir(), "keyplane-chromium-"));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    bypassCSP: false,
    viewport: { width: 1024, height: 768 },
  });
  context.setDefaultTimeout(WAIT);
  page = context.pages()[0] ?? (await context.newPage());

  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    // "Failed to load resource" is Chromium logging an HTTP error status: the expected 401 of the
    // spent invitation, and /favicon.ico, which Chromium asks for by itself and the server lacks.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
  });
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.pathname.startsWith("/api/")) apiRequests.push({ path: url.pathname, body: r.postData() });
  });
  await context.exposeFunction("__kpCspViolation", (v) => {
    cspViolations.push(v);
    onCspViolation(v);
  });
  await context.addInitScript(() => {
    document.addEventListener(
      "securitypolicyviolation",
      (e) =>
        window.__kpCspViolation({
          page: location.pathname,
          directive: e.violatedDirective,
          blocked: e.blockedURI,
          sample: e.sample,
        }),
      true,
    );
    // Record every navigator.credentials.get() call (mediation, allowCredentials, outcome), so the
    // tests can tell the autofill request from the button's. Observes only; changes nothing.
    window.__kpGets = [];
    if (!window.CredentialsContainer) return; // about:blank between pages: not a secure context
    const get = CredentialsContainer.prototype.get;
    CredentialsContainer.prototype.get = function (options) {
      const call = {
        mediation: (options && options.mediation) || "optional",
        allowCredentials: ((options && options.publicKey && options.publicKey.allowCredentials) || []).length,
        state: "pending",
      };
      window.__kpGets.push(call);
      const result = get.call(this, options);
      result.then(
        () => (call.state = "resolved"),
        (e) => (call.state = `rejected: ${e.name}`),
      );
      return result;
    };
  });

  cdp = await context.newCDPSession(page);
  cdp.on("WebAuthn.credentialAsserted", (e) => assertedCredentials.push(e.credential));
  await cdp.send("WebAuthn.enable", { enableUI: false });
  ({ authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", { options: AUTHENTICATOR }));
});

after(async () => {
  await context?.close();
  if (profileDir) await rm(profileDir, { recursive: true, force: true });
});

// --- helpers -------------------------------------------------------------------------------

/** Waits until the status line says how things ended (class "ok" or "error"); returns it. */
async function outcome() {
  await page.waitForFunction(() => {
    const el = document.getElementById("status");
    return el.classList.contains("ok") || el.classList.contains("error");
  });
  return page.$eval("#status", (el) => ({ kind: el.className, text: el.textContent }));
}

/** Empties the status line, so that the next outcome read is the next action's. */
async function clearStatus() {
  await page.$eval("#status", (el) => {
    el.textContent = "";
    el.className = "";
  });
}

async function assertOutcome(kind, pattern) {
  const got = await outcome();
  assert.equal(got.kind, kind, `status line: ${JSON.stringify(got.text)}`);
  assert.match(got.text, pattern);
  return got.text;
}

const gets = () => page.evaluate(() => window.__kpGets.map((g) => ({ ...g })));

/** Loads `path` fresh and returns the response of the document request. */
async function load(path) {
  await page.goto("about:blank");
  const response = await page.goto(`${BASE}${path}`, { waitUntil: "load" });
  assert.equal(response.status(), 200, `${path}`);
  return response;
}

/** Loads /signin with the authenticator not answering, so the autofill request stays pending. */
async function loadSignInWithAutofillPending() {
  await cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled: false });
  await load("/signin");
  await page.waitForFunction(() => window.__kpGets.some((g) => g.mediation === "conditional" && g.state === "pending"));
  // A real user's touch arrives with the button click; the pending autofill request is not
  // completed by this (checked below: it ends aborted).
  await cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled: true });
}

async function signedInUsername() {
  const me = await page.request.get(`${BASE}/api/v1/me`); // the context's cookies: the page's session
  assert.equal(me.status(), 200, "the page's session cookie authenticates /api/v1/me");
  return (await me.json()).user.username;
}

async function screenshot(name) {
  if (SCREENSHOTS) await page.screenshot({ path: join(SCREENSHOTS, `keyplane-${name}.png`), fullPage: true });
}

// --- scenarios -----------------------------------------------------------------------------

test("enrolment link: creating a passkey spends the invitation", async () => {
  await page.goto("about:blank");
  await page.goto(ENROL_LINK);
  await page.fill("#nickname", NICKNAME);
  await page.click("#enrol-button");
  await assertOutcome("ok", new RegExp(`^Passkey "${NICKNAME}" created\\. You can now sign in\\.$`));
  assert.equal(page.url(), `${BASE}/enrol`, "the spent token is removed from the address bar");
  await screenshot("enrol");

  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  assert.equal(credentials.length, 1, "the virtual authenticator holds the new passkey");
  assert.equal(credentials[0].isResidentCredential, true, "a discoverable credential (passkey)");
  assert.equal(credentials[0].rpId, new URL(BASE).hostname);

  // The same link again, in a fresh document: the server refuses the spent token.
  await page.goto("about:blank");
  await page.goto(ENROL_LINK);
  await page.click("#enrol-button");
  await assertOutcome("error", /invitation link is unknown, already used or expired/);
  const after = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  assert.equal(after.credentials.length, 1, "no second passkey was created");
});

test("sign-in, username first: typing the username and clicking the button", async () => {
  await loadSignInWithAutofillPending();
  const before = apiRequests.length;
  await page.fill("#username", USERNAME);
  await page.click("#signin-button");
  await assertOutcome("ok", /^Signed in as .+ \(aal2\)\.$/);

  const options = apiRequests.slice(before).filter((r) => r.path === "/api/v1/authentication/options");
  assert.deepEqual(options.map((r) => JSON.parse(r.body)), [{ username: USERNAME }]);
  assert.deepEqual(await gets(), [
    { mediation: "conditional", allowCredentials: 0, state: "rejected: AbortError" }, // autofill, aborted by the click
    { mediation: "optional", allowCredentials: 1, state: "resolved" }, // the button's request, for that user's passkey
  ]);
  assert.equal(await signedInUsername(), USERNAME);
});

test("sign-in, usernameless: an empty username and the button", async () => {
  await page.context().clearCookies();
  await loadSignInWithAutofillPending();
  const before = apiRequests.length;
  await page.fill("#username", "");
  await page.click("#signin-button");
  await assertOutcome("ok", /^Signed in as .+ \(aal2\)\.$/);

  const options = apiRequests.slice(before).filter((r) => r.path === "/api/v1/authentication/options");
  assert.deepEqual(options.map((r) => JSON.parse(r.body)), [{}]);
  assert.deepEqual(await gets(), [
    { mediation: "conditional", allowCredentials: 0, state: "rejected: AbortError" },
    { mediation: "optional", allowCredentials: 0, state: "resolved" }, // the authenticator picks the passkey
  ]);
  assert.equal(await signedInUsername(), USERNAME);
});

test("sign-in, passkey autofill: conditional mediation on the username field", async () => {
  await page.context().clearCookies();
  // The authenticator answers as soon as asked: Chromium's virtual authenticator completes a
  // conditional request by itself (as if the user picked the passkey from the field's
  // suggestions), so the page signs in with no click at all.
  await cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled: true });
  const asserted = assertedCredentials.length;
  await load("/signin");
  assert.equal(await page.getAttribute("#username", "autocomplete"), "username webauthn");
  assert.equal(await page.evaluate(() => PublicKeyCredential.isConditionalMediationAvailable()), true);
  await assertOutcome("ok", /^Signed in as .+ \(aal2\)\.$/);
  assert.deepEqual(await gets(), [{ mediation: "conditional", allowCredentials: 0, state: "resolved" }]);
  assert.equal(assertedCredentials.length, asserted + 1, "the virtual authenticator signed one assertion");
  assert.equal(await page.inputValue("#username"), "", "nothing was typed");
  assert.equal(await signedInUsername(), USERNAME);
  await screenshot("signin");
});

test("sign-in: clicking before the autofill request has started cancels it", async () => {
  await page.context().clearCookies();
  await cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled: true });
  // Hold the page's first options request (the autofill's) until the button's sign-in is done:
  // a user who clicks faster than the network.
  const pattern = "**/api/v1/authentication/options";
  let release;
  const released = new Promise((resolve) => (release = resolve));
  let held = null;
  const holding = new Promise((resolve) =>
    page.route(pattern, async (route) => {
      if (!held) {
        held = route.request();
        resolve();
        await released;
      }
      await route.continue();
    }),
  );
  try {
    await load("/signin");
    await holding;
    assert.equal(held.postData(), "{}", "the held request is the autofill's");
    await page.fill("#username", USERNAME);
    await page.click("#signin-button");
    await assertOutcome("ok", /^Signed in as .+ \(aal2\)\.$/);
    const verifies = apiRequests.filter((r) => r.path === "/api/v1/authentication/verify").length;

    const autofillOptions = page.waitForResponse((r) => r.request() === held);
    release();
    await autofillOptions;
    await page.waitForFunction(() => window.__kpGets.some((g) => g.mediation === "conditional" && g.state !== "pending"));
    assert.deepEqual(await gets(), [
      { mediation: "optional", allowCredentials: 1, state: "resolved" },
      { mediation: "conditional", allowCredentials: 0, state: "rejected: AbortError" }, // refused at once
    ]);
    const after = apiRequests.filter((r) => r.path === "/api/v1/authentication/verify").length;
    assert.equal(after, verifies, "no second sign-in from the late autofill request");
    await assertOutcome("ok", /^Signed in as /);
  } finally {
    release();
    await page.unroute(pattern);
  }
});

test("account page: passkeys with their kind, rename, guarded removal, sessions, recovery codes", async () => {
  await page.context().clearCookies();
  await loadSignInWithAutofillPending();
  await page.fill("#username", USERNAME);
  await page.click("#signin-button");
  await assertOutcome("ok", /^Signed in as /);
  await load("/account");
  await page.waitForFunction(() => document.getElementById("who").textContent.startsWith("Signed in as"));
  await page.waitForSelector("#passkeys li");
  assert.equal(await page.locator("#passkeys li").count(), 1);
  assert.match(await page.textContent("#passkeys li"), new RegExp(`${NICKNAME}\\s+Device-bound`), "the virtual authenticator does not sync");
  assert.equal(await page.isVisible("#recommendation"), true, "one passkey: the page nudges to a second");
  await page.waitForSelector("#sessions li");
  assert.match(await page.textContent("#sessions"), /This browser/);
  // Rendered by the server: the recent sign-ins (this one included), instants shown in the
  // reader's time zone by the script, and the session's CSRF token for the buttons.
  assert.ok((await page.locator("#sign-ins li").count()) >= 1, "recent sign-ins listed");
  assert.match(await page.textContent("#sign-ins li"), /AAL[123]/);
  assert.equal(await page.locator("time:has-text('UTC')").count(), 0, "every instant localised");
  assert.ok(await page.getAttribute('meta[name="csrf-token"]', "content"), "the page carries the CSRF token");

  // Rename (the browser's prompt answered).
  page.once("dialog", (d) => d.accept("Laptop"));
  await clearStatus();
  await page.click("#passkeys li button:has-text('Rename')");
  await assertOutcome("ok", /^Renamed to "Laptop"\.$/);
  await page.waitForFunction(() => document.querySelector("#passkeys li").textContent.includes("Laptop"));

  // The only passkey cannot be removed.
  page.once("dialog", (d) => d.accept());
  await clearStatus();
  await page.click("#passkeys li button:has-text('Remove')");
  await assertOutcome("error", /only passkey: add another before removing it/);
  assert.equal(await page.locator("#passkeys li").count(), 1);

  // This authenticator already holds alice's passkey: adding another here is refused by it.
  await clearStatus();
  await page.click("#add-passkey");
  await assertOutcome("error", /already holds a passkey for your account/);

  // A second device: the first authenticator is set aside (its passkeys kept), another one
  // creates alice's second passkey, which she then removes; then the first comes back.
  const { credentials: kept } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId });
  const { authenticatorId: second } = await cdp.send("WebAuthn.addVirtualAuthenticator", { options: AUTHENTICATOR });
  try {
    await clearStatus();
    await page.click("#add-passkey");
    await assertOutcome("ok", /^Passkey "Passkey 2" added\.$/);
    await page.waitForFunction(() => document.querySelectorAll("#passkeys li").length === 2);
    assert.equal(await page.isVisible("#recommendation"), false, "two passkeys: no more nudge");
    await clearStatus();
    page.once("dialog", (d) => d.accept());
    await page.click("#passkeys li:has-text('Passkey 2') button:has-text('Remove')");
    await assertOutcome("ok", /^Removed "Passkey 2"\.$/);
    await page.waitForFunction(() => document.querySelectorAll("#passkeys li").length === 1);
  } finally {
    await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId: second });
    ({ authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", { options: AUTHENTICATOR }));
    for (const credential of kept) await cdp.send("WebAuthn.addCredential", { authenticatorId, credential });
  }

  // Recovery codes (the test policy allows them): shown once.
  await page.waitForSelector("#codes-section:not([hidden])");
  await clearStatus();
  await page.click("#generate-codes");
  await assertOutcome("ok", /^New recovery codes generated\.$/);
  const codes = (await page.textContent("#codes")).split("\n");
  assert.equal(codes.length, 10);
  assert.ok(codes.every((c) => /^[0-9A-Z]{4}(-[0-9A-Z]{4}){6}$/.test(c)), codes.join(" "));
  await page.waitForFunction(() => document.getElementById("codes-status").textContent.startsWith("10 unused"));
  await screenshot("account");

  // Renamed back, for the checks the Rust side makes afterwards.
  page.once("dialog", (d) => d.accept(NICKNAME));
  await clearStatus();
  await page.click("#passkeys li button:has-text('Rename')");
  await assertOutcome("ok", /^Renamed to /);
});

test("admin console: coverage charts as SVG, approving a request, the recovery case queue", async () => {
  // Signed in as alice (an administrator) by the account test.
  await load("/admin");
  await page.waitForFunction(() => document.getElementById("who").textContent.includes("(admin)"));
  await page.waitForSelector("#coverage-section:not([hidden]) #chart-sign-ins svg");
  for (const id of ["chart-coverage", "chart-kinds", "chart-models", "chart-sign-ins"]) {
    const label = await page.getAttribute(`#${id} svg`, "aria-label");
    assert.ok(label && label.length > 10, `${id} describes itself: ${label}`);
    assert.ok((await page.locator(`#${id} svg rect`).count()) > 0, `${id} draws bars`);
  }
  assert.match(await page.getAttribute("#chart-coverage svg", "aria-label"), /All users: \d+ none, \d+ one, \d+ two or more/);
  assert.match(await page.getAttribute("#chart-sign-ins svg", "aria-label"), /\d{4}-\d{2}-\d{2}: \d+ AAL1, \d+ AAL2/);

  await page.waitForSelector("#cases-section:not([hidden]) #cases li");
  assert.match(await page.textContent("#cases"), /ready/);

  await page.waitForSelector("#approvals li[data-id]");
  assert.match(await page.textContent("#approvals"), /authenticators\.synced/);
  // Deciding needs a passkey confirmation within 2 s (the test policy's step-up rule): wait
  // that long since sign-in, then the console asks the authenticator and retries.
  await page.waitForTimeout(2100);
  const asserted = assertedCredentials.length;
  const before = apiRequests.length;
  await clearStatus();
  await page.click("#approvals li[data-id] button:has-text('Approve')");
  await assertOutcome("ok", /^Approved: /);
  assert.equal(assertedCredentials.length, asserted + 1, "the step-up signed one assertion");
  assert.ok(apiRequests.slice(before).some((r) => r.path === "/api/v1/step-up/verify"), "a step-up ceremony ran");
  await page.waitForFunction(() => document.getElementById("approvals").textContent.includes("Nothing waiting"));

  // Users: search, suspend with a reason, then reactivate.
  await page.waitForSelector("#users-section:not([hidden]) #users li");
  await page.fill("#users-q", RECOVERY_USERNAME);
  await page.click("#users-search");
  await page.waitForFunction((name) => {
    const items = [...document.querySelectorAll("#users li")];
    return items.length === 1 && items[0].dataset.username === name;
  }, RECOVERY_USERNAME);
  await clearStatus();
  page.once("dialog", (d) => d.accept("left the company"));
  await page.click("#users li button:has-text('Suspend')");
  await assertOutcome("ok", new RegExp(`^${RECOVERY_USERNAME} is suspended\\.$`));
  await page.waitForSelector("#users li button:has-text('Reactivate')");
  await clearStatus();
  page.once("dialog", (d) => d.accept("came back"));
  await page.click("#users li button:has-text('Reactivate')");
  await assertOutcome("ok", new RegExp(`^${RECOVERY_USERNAME} is active\\.$`));

  // A recovery case: the user asks for help on /recover (another tab; the public request needs no
  // session), the case appears in the console's queue, is taken, the policy's check recorded and
  // declared verified (no cooling-off in the test policy: ready at once).
  const userTab = await context.newPage();
  try {
    await userTab.goto(`${BASE}/recover`);
    await userTab.fill("#case-username", CASE_USERNAME);
    await userTab.click("#case-button");
    await userTab.waitForFunction(() => document.getElementById("status").className === "ok");
    assert.match(await userTab.textContent("#status"), /^If the account exists, a recovery case is open/);
  } finally {
    await userTab.close();
  }
  await load("/admin");
  const mine = "#cases li[data-state]:not([data-state='ready'])";
  await page.waitForSelector(`${mine}[data-state='requested']`);
  assert.match(await page.textContent(`${mine}[data-state='requested']`), /opened .* by user/);
  await clearStatus();
  await page.click(`${mine} button:has-text('Take')`);
  await assertOutcome("ok", /^You are verifying this case\.$/);
  await page.waitForSelector(`${mine}[data-state='verifying'] button:has-text('Record identity document')`);
  await clearStatus();
  page.once("dialog", (d) => d.accept("video call, passport shown"));
  await page.click(`${mine} button:has-text('Record identity document')`);
  await assertOutcome("ok", /^Recorded identity_document\.$/);
  await clearStatus();
  await page.click(`${mine} button:has-text('Identity verified')`);
  await assertOutcome("ok", /^The case is ready\.$/);
  await page.waitForFunction(() => document.querySelectorAll("#cases li[data-state='ready']").length === 2);
  await screenshot("admin");

  await page.fill("#users-q", "");
  await page.click("#users-search");
  await page.waitForFunction(() => document.querySelectorAll("#users li").length > 1);
});

test("admin console: passkeys, policy lint, diff and simulate, the audit log with its verify status", async () => {
  await load("/admin");
  // Passkeys: searched by username, suspended with a reason, reactivated.
  await page.waitForSelector("#creds-section:not([hidden]) #creds li");
  await page.fill("#creds-user", RECOVERY_USERNAME);
  await page.click("#creds-search");
  await page.waitForFunction(() => document.getElementById("creds-total").textContent.startsWith("1 passkey"));
  await clearStatus();
  page.once("dialog", (d) => d.accept("checking a report"));
  await page.click("#creds li:first-child button:has-text('Suspend')");
  await assertOutcome("ok", /: suspended\.$/);
  await page.waitForSelector("#creds li:first-child button:has-text('Reactivate')");
  await clearStatus();
  page.once("dialog", (d) => d.accept("all clear"));
  await page.click("#creds li:first-child button:has-text('Reactivate')");
  await assertOutcome("ok", /: reactivated\.$/);

  // Policy: the active document is shown; lint finds a mistake by line; diff and simulate.
  await page.waitForSelector("#policy-section:not([hidden])");
  assert.match(await page.inputValue("#policy-doc"), /codes = "allow"/);
  const good = await page.inputValue("#policy-doc");
  await page.fill("#policy-doc", `${good}[sessions]\nidle_secs = 5\n`);
  await page.click("#policy-lint");
  await page.waitForFunction(() => /line \d+, column \d+: sessions\.idle_secs/.test(document.getElementById("policy-result").textContent));
  await page.fill("#policy-doc", good.replace("cooling_off_secs = 0", "cooling_off_secs = 3600"));
  await page.click("#policy-lint");
  await page.waitForFunction(() => document.getElementById("policy-result").textContent.startsWith("Valid."));
  await page.click("#policy-diff");
  await page.waitForFunction(() => document.getElementById("policy-result").textContent.includes("+cooling_off_secs = 3600"));
  await page.click("#policy-simulate");
  await page.waitForFunction(() => /^\(none\): \d+ user\(s\)/m.test(document.getElementById("policy-result").textContent));

  // The audit log: intact, newest events listed; a full verification from genesis.
  await page.waitForSelector("#audit-section:not([hidden]) #audit li");
  assert.match(await page.textContent("#audit-verify"), /^Chain intact: \d+ event\(s\) checked/);
  await page.click("#audit-verify-button");
  await page.waitForFunction(() => /checked from the first/.test(document.getElementById("audit-verify").textContent));
  // The list was refreshed with the verification: the newest event is the reactivation above.
  await page.waitForFunction(() => /^#\d+ credential\.reactivated/.test(document.querySelector("#audit li").textContent));
  await page.waitForSelector("#clients-section:not([hidden])");
  await page.waitForSelector("#exceptions-section:not([hidden])");
  await screenshot("admin-more");
});

test("admin console: a machine client created (secret shown once), rotated and revoked; an exception asked for; a report", async () => {
  await load("/admin");
  await page.waitForSelector("#client-form:not([hidden])");
  await page.fill("#client-name", "siem-export");
  await page.fill("#client-scopes", "audit.read, reports.read");
  await page.fill("#client-days", "30");
  await clearStatus();
  await page.click("#client-submit");
  await assertOutcome("ok", /^Machine client siem-export created\.$/);
  assert.match(await page.textContent("#client-secret-value"), /^kpm_[A-Za-z0-9_-]{43}$/);
  const first = await page.textContent("#client-secret-value");
  await page.waitForSelector("#clients li[data-name='siem-export']");
  await clearStatus();
  await page.click("#clients li[data-name='siem-export'] button:has-text('Rotate the secret')");
  await assertOutcome("ok", /^New secret for siem-export; the previous one works until /);
  assert.notEqual(await page.textContent("#client-secret-value"), first);
  await clearStatus();
  page.once("dialog", (d) => d.accept("replaced by the new exporter"));
  await page.click("#clients li[data-name='siem-export'] button:has-text('Revoke')");
  await assertOutcome("ok", /^siem-export is revoked\.$/);
  // A webhook endpoint: the form shows that kind's fields; the secret is its signing secret.
  await page.selectOption("#client-kind", "webhook");
  assert.equal(await page.isVisible("#client-scopes"), false, "no scopes for a webhook");
  await page.fill("#client-name", "siem-hook");
  await page.fill("#client-webhook-url", "https://siem.example.com/keyplane");
  await page.fill("#client-events", "credential.revoked, fraud.alert_opened");
  await clearStatus();
  await page.click("#client-submit");
  await assertOutcome("ok", /^Machine client siem-hook created\.$/);
  assert.match(await page.textContent("#client-secret-value"), /^whsec_[A-Za-z0-9+/]{43}=$/);
  await page.waitForSelector("#clients li[data-name='siem-hook']");
  assert.match(await page.textContent("#clients li[data-name='siem-hook']"), /webhook endpoint/);
  await page.selectOption("#client-kind", "api_token");

  // An exception alice asks for waits for someone else: she cannot approve her own request.
  await page.fill("#exception-user", RECOVERY_USERNAME);
  await page.fill("#exception-rule", "authenticators.synced");
  await page.fill("#exception-reason", "travelling without her security key");
  await clearStatus();
  await page.click("#exception-submit");
  await assertOutcome("ok", /^Asked: a different administrator approves it/);
  await page.waitForSelector("#approvals li[data-id]");
  await clearStatus();
  await page.click("#approvals li[data-id] button:has-text('Approve')");
  await assertOutcome("error", /^Dual control: a different administrator must decide your own request\.$/);

  // Bulk actions preview what they would touch (the passkey search is their filter).
  await page.fill("#creds-user", RECOVERY_USERNAME);
  await page.selectOption("#bulk-action", "suspend");
  await page.click("#bulk-preview");
  await page.waitForFunction(() => /^1 passkey\(s\) would be suspended\.$/.test(document.getElementById("bulk-result").textContent));

  // A re-enrolment campaign for a model nobody here uses: started, then closed.
  await page.waitForSelector("#campaign-form:not([hidden])");
  await page.fill("#campaign-aaguid", "11111111-2222-3333-4444-555555555555");
  await page.fill("#campaign-reason", "vendor recall drill");
  await clearStatus();
  await page.click("#campaign-submit");
  await assertOutcome("ok", /^Campaign started: 0 user\(s\) marked for re-enrolment\.$/);
  await page.waitForSelector("#campaigns li[data-aaguid='11111111-2222-3333-4444-555555555555']");
  await clearStatus();
  page.once("dialog", (d) => d.accept("drill over"));
  await page.click("#campaigns li button:has-text('Close')");
  await assertOutcome("ok", /^Campaign closed\.$/);

  await page.selectOption("#report-name", "drift");
  await page.click("#report-show");
  await page.waitForFunction(() => document.getElementById("report").textContent.includes("non_compliant"));
  await page.waitForSelector("#fraud-section:not([hidden])");
});

test("OpenID Connect: an application sends the user to sign in and gets a code back", async () => {
  await page.context().clearCookies();
  // The application's callback: a real listener on the registered loopback port.
  const callback = createServer((req, res) => res.writeHead(200, { "content-type": "text/plain" }).end("the wiki"));
  await new Promise((resolve) => callback.listen(Number(new URL(OIDC_REDIRECT).port), "127.0.0.1", resolve));
  try {
    const query = new URLSearchParams({
      response_type: "code",
      client_id: OIDC_CLIENT,
      redirect_uri: OIDC_REDIRECT,
      scope: "openid profile",
      state: "wiki-state",
      nonce: "wiki-nonce",
      code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
      code_challenge_method: "S256",
      acr_values: "aal2",
    });
    await cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled: false });
    await page.goto("about:blank");
    await page.goto(`${BASE}/oidc/authorize?${query}`, { waitUntil: "load" });
    assert.match(page.url(), /\/signin\?authz=kpaz_/, "no session: to the sign-in page");
    assert.match(await page.textContent("#pending"), /Team wiki\s+asks you to sign in/);
    assert.match(await page.textContent("#pending"), /assurance level AAL2/);
    await screenshot("signin-oidc");
    await page.waitForFunction(() => window.__kpGets.some((g) => g.mediation === "conditional" && g.state === "pending"));
    await cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled: true });
    await page.fill("#username", USERNAME);
    const back = page.waitForURL(`${OIDC_REDIRECT}**`, { timeout: WAIT });
    await page.click("#signin-button");
    await back;
    const answer = new URL(page.url()).searchParams;
    assert.match(answer.get("code") || "", /^kpac_/, page.url());
    assert.equal(answer.get("state"), "wiki-state");
    assert.equal(answer.get("iss"), BASE);
    assert.equal(answer.get("error"), null);
  } finally {
    await new Promise((resolve) => callback.close(resolve));
  }
});

test("phone width (375 px): the account page and the console do not scroll sideways", async () => {
  await page.setViewportSize({ width: 375, height: 667 });
  try {
    for (const [path, ready] of [["/account", "#passkeys li"], ["/admin", "#chart-coverage svg"]]) {
      await load(path);
      await page.waitForSelector(ready);
      const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scrollWidth <= 375, `${path}: no horizontal scrolling (scrollWidth ${scrollWidth})`);
    }
  } finally {
    await page.setViewportSize({ width: 1024, height: 768 });
  }
});

test("accessible markup: every control has a label, every button a name, headings in order; axe-core finds no WCAG 2.1 AA violation", async () => {
  for (const [path, ready] of [["/enrol", "#enrol-button"], ["/signin", "#signin-button"], ["/recover", "#code-button"], ["/account", "#passkeys li"], ["/admin", "#chart-coverage svg"]]) {
    await load(path);
    await page.waitForSelector(ready);
    const problems = await page.evaluate(() => {
      const out = [];
      for (const c of document.querySelectorAll("input, select, textarea")) {
        if (c.type === "hidden") continue;
        const label = c.id && document.querySelector(`label[for="${c.id}"]`);
        if (!label || !label.textContent.trim()) out.push(`${c.tagName.toLowerCase()}#${c.id} has no label`);
      }
      for (const b of document.querySelectorAll("button")) {
        if (!b.textContent.trim() && !b.getAttribute("aria-label")) out.push(`a button without a name: ${b.outerHTML}`);
      }
      let last = 1;
      for (const h of document.querySelectorAll("h1, h2, h3, h4")) {
        const level = Number(h.tagName[1]);
        if (level > last + 1) out.push(`${h.tagName} "${h.textContent}" skips a level`);
        last = level;
      }
      if (document.querySelectorAll("h1").length !== 1) out.push("not exactly one h1");
      if (!document.documentElement.lang) out.push("no lang on <html>");
      for (const svg of document.querySelectorAll("svg")) {
        if (svg.getAttribute("role") !== "img" || !svg.getAttribute("aria-label")) out.push("a chart without role=img and a label");
      }
      return out;
    });
    assert.deepEqual(problems, [], path);
    // And axe-core's WCAG 2.1 A and AA rules (contrast, names, roles, landmarks …), run in the
    // page through DevTools (so the page's Content-Security-Policy stays as it is).
    await page.evaluate(AXE_SOURCE);
    const violations = await page.evaluate(async () => {
      const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
      return r.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).slice(0, 5).join(", ")}`);
    });
    assert.deepEqual(violations, [], `${path}: axe-core`);
  }
});

test("Content-Security-Policy: sent on the pages, and nothing in them violates it", async () => {
  for (const path of ["/enrol", "/signin", "/recover", "/account", "/admin"]) {
    const response = await load(path);
    const csp = response.headers()["content-security-policy"];
    assert.ok(csp, `${path} has a Content-Security-Policy header`);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const inline = await page.evaluate(() => ({
      scripts: document.querySelectorAll("script:not([src])").length,
      handlers: [...document.querySelectorAll("*")].flatMap((el) =>
        [...el.attributes].filter((a) => /^on/i.test(a.name)).map((a) => `${el.tagName}[${a.name}]`),
      ),
      styles: document.querySelectorAll("[style]").length,
    }));
    assert.deepEqual(inline, { scripts: 0, handlers: [], styles: 0 }, `${path} has no inline script or style`);
  }
  assert.deepEqual(cspViolations, [], "no CSP violation on any page during the whole run");

  // The listener works: an inline script injected into the page (in a second tab, whose console
  // the last test does not read) is blocked and reported.
  const probe = await context.newPage();
  try {
    await probe.goto(`${BASE}/enrol`);
    const reported = new Promise((resolve) => (onCspViolation = resolve));
    await probe.evaluate(() => {
      const s = document.createElement("script");
      s.textContent = "window.__kpInlineRan = true";
      document.body.append(s);
    });
    const violation = await reported;
    assert.equal(violation.directive, "script-src-elem");
    assert.equal(await probe.evaluate(() => window.__kpInlineRan === true), false, "the inline script did not run");
  } finally {
    onCspViolation = () => {};
    cspViolations.length = 0;
    await probe.close();
  }
});

test("phone width (375 px): the pages fit and the button is visible", async () => {
  await page.setViewportSize({ width: 375, height: 667 });
  try {
    for (const [path, button] of [["/enrol", "#enrol-button"], ["/signin", "#signin-button"], ["/recover", "#code-button"]]) {
      await cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled: false });
      await load(path);
      assert.ok(await page.isVisible(button), `${path}: ${button} is visible`);
      const box = await page.locator(button).boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= 375, `${path}: ${button} within the width: ${JSON.stringify(box)}`);
      assert.ok(box.y >= 0 && box.y + box.height <= 667, `${path}: ${button} within the first screen: ${JSON.stringify(box)}`);
      const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scrollWidth <= 375, `${path}: no horizontal scrolling (scrollWidth ${scrollWidth})`);
      if (path === "/signin") await screenshot("signin-phone");
    }
  } finally {
    await cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled: true });
    await page.setViewportSize({ width: 1024, height: 768 });
  }
});

test("recovery: a recovery code on /recover creates a new passkey, once", async () => {
  await page.context().clearCookies();
  await cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled: false });
  await load("/signin");
  assert.equal(await page.getAttribute("text=Recover your account", "href"), "/recover", "sign-in links to recovery");
  await load("/recover");
  await cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled: true });
  assert.equal(await page.isVisible("#link-section"), false, "no link, no link section");
  const before = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials.length;
  await page.fill("#code-username", RECOVERY_USERNAME);
  await page.fill("#code", RECOVERY_CODE.toLowerCase());
  await page.click("#code-button");
  await assertOutcome("ok", /^Passkey "Recovered passkey" created\. Your account is recovered: sign in with it\.$/);
  assert.equal(await page.inputValue("#code"), "", "the code is cleared from the form");
  const after = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials.length;
  assert.equal(after, before + 1, "the virtual authenticator holds the recovered passkey");
  // The code is spent.
  await page.fill("#code-username", RECOVERY_USERNAME);
  await page.fill("#code", RECOVERY_CODE);
  await page.click("#code-button");
  await assertOutcome("error", /do not match an unused code/);
  await screenshot("recover");
});

test("recovery: the help desk's link on /recover creates a new passkey, once", async () => {
  await page.context().clearCookies();
  await page.goto("about:blank");
  await page.goto(RECOVERY_LINK);
  assert.equal(await page.isVisible("#link-section"), true);
  await page.click("#link-button");
  await assertOutcome("ok", /^Passkey "Recovered passkey" created\./);
  assert.equal(page.url(), `${BASE}/recover`, "the spent link is removed from the address bar");
  await page.goto("about:blank");
  await page.goto(RECOVERY_LINK);
  await page.click("#link-button");
  await assertOutcome("error", /recovery link is not valid any more/);
});

/** The recovery link in an email to `to` in the test SMTP server's mailbox (waits for it). */
async function linkFromInbox(to) {
  const deadline = Date.now() + WAIT;
  while (Date.now() < deadline) {
    const dir = join(MAILDIR, "new");
    const names = await readdir(dir).catch(() => []);
    for (const name of names) {
      // Quoted-printable: soft line breaks and the encoded "=".
      const text = (await readFile(join(dir, name), "utf8")).replace(/=\r?\n/g, "").replace(/=3D/g, "=");
      const link = text.match(/https?:\/\/\S+\/recover#token=[A-Za-z0-9_-]+/);
      if (text.includes(`To: ${to}`) && link) return link[0];
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no recovery link arrived for ${to}`);
}

test("recovery: the help desk's case, its link from the inbox, a new passkey", async () => {
  await page.context().clearCookies();
  const link = await linkFromInbox(`${CASE_USERNAME}@example.com`);
  assert.ok(link.startsWith(`${BASE}/recover#token=`), link);
  // cara's new device: Chromium's virtual CTAP2 authenticator holds three discoverable
  // credentials, and this one is full (alice's, rita's and rob's).
  await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId });
  ({ authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", { options: AUTHENTICATOR }));
  await page.goto("about:blank");
  await page.goto(link);
  await clearStatus();
  await page.click("#link-button");
  await assertOutcome("ok", /^Passkey "Recovered passkey" created\. Your account is recovered/);
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  assert.equal(credentials.length, 1, "cara's new passkey is on her new device");
});

test("recovery: asking the help desk answers the same for any username", async () => {
  await load("/recover");
  await page.fill("#case-username", "nobody-at-all");
  await page.click("#case-button");
  await assertOutcome("ok", /^If the account exists, a recovery case is open/);
});

test("no uncaught errors or console errors in the pages", () => {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(consoleErrors, []);
});
