//! Parsing and linting the TOML policy document. Like a compiler, the linter does not stop at
//! the first problem: it walks the whole document and reports every error with its line and
//! column. A document with no errors becomes a [`Policy`].

use super::document::*;
use crate::assurance::Aal;
use crate::mds::{CertificationLevel, STATUSES};
use toml_edit::{ImDocument, Item, Table, Value};

/// One problem in a policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LintError {
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending key (`authenticators.regulated.synced`).
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for LintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.column, self.path, self.message
        )
    }
}

struct Linter<'a> {
    text: &'a str,
    errors: Vec<LintError>,
}

impl Linter<'_> {
    fn at(&self, span: Option<std::ops::Range<usize>>) -> (usize, usize) {
        let offset = span.map(|s| s.start).unwrap_or(0).min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        (line, column)
    }

    fn error(
        &mut self,
        span: Option<std::ops::Range<usize>>,
        path: &str,
        message: impl Into<String>,
    ) {
        let (line, column) = self.at(span);
        self.errors.push(LintError {
            line,
            column,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Reports keys of `table` not in `known`.
    fn unknown_keys(&mut self, table: &Table, path: &str, known: &[&str]) {
        for (key, item) in table.iter() {
            if !known.contains(&key) {
                let p = join(path, key);
                self.error(
                    item.span(),
                    &p,
                    format!("unknown key; expected one of: {}", known.join(", ")),
                );
            }
        }
    }

    fn value<'v>(&mut self, table: &'v Table, path: &str, key: &str) -> Option<&'v Value> {
        match table.get(key)? {
            Item::Value(v) => Some(v),
            other => {
                self.error(
                    other.span(),
                    &join(path, key),
                    "expected a value, not a table",
                );
                None
            }
        }
    }

    fn bool(&mut self, table: &Table, path: &str, key: &str) -> Option<bool> {
        let v = self.value(table, path, key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.error(v.span(), &join(path, key), "expected true or false");
                None
            }
        }
    }

    fn int(&mut self, table: &Table, path: &str, key: &str, min: i64, max: i64) -> Option<i64> {
        let v = self.value(table, path, key)?;
        match v.as_integer() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.error(
                    v.span(),
                    &join(path, key),
                    format!("{n} is out of range ({min} to {max})"),
                );
                None
            }
            None => {
                self.error(v.span(), &join(path, key), "expected an integer");
                None
            }
        }
    }

    fn string(&mut self, table: &Table, path: &str, key: &str) -> Option<String> {
        let v = self.value(table, path, key)?;
        match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.error(v.span(), &join(path, key), "expected a string");
                None
            }
        }
    }

    /// A string that must be one of `allowed`.
    fn choice(&mut self, table: &Table, path: &str, key: &str, allowed: &[&str]) -> Option<String> {
        let v = self.value(table, path, key)?;
        match v.as_str() {
            Some(s) if allowed.contains(&s) => Some(s.to_string()),
            _ => {
                self.error(
                    v.span(),
                    &join(path, key),
                    format!("expected one of: {}", allowed.join(", ")),
                );
                None
            }
        }
    }

    /// A list of strings, each checked by `check` (which returns a complaint or nothing).
    fn strings(
        &mut self,
        table: &Table,
        path: &str,
        key: &str,
        check: impl Fn(&str) -> Option<String>,
    ) -> Option<Vec<String>> {
        let v = self.value(table, path, key)?;
        let Some(array) = v.as_array() else {
            self.error(v.span(), &join(path, key), "expected a list of strings");
            return None;
        };
        let mut out = Vec::new();
        for item in array.iter() {
            match item.as_str() {
                Some(s) => match check(s) {
                    Some(complaint) => self.error(item.span(), &join(path, key), complaint),
                    None => out.push(s.to_string()),
                },
                None => self.error(item.span(), &join(path, key), "expected a string"),
            }
        }
        Some(out)
    }

    fn table<'t>(&mut self, root: &'t Table, path: &str, key: &str) -> Option<&'t Table> {
        match root.get(key)? {
            Item::Table(t) => Some(t),
            other => {
                self.error(
                    other.span(),
                    &join(path, key),
                    "expected a table ([section])",
                );
                None
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn check_aaguid(s: &str) -> Option<String> {
    match uuid::Uuid::parse_str(s) {
        Ok(u) if u.to_string() == s => None,
        Ok(u) => Some(format!("write AAGUIDs lowercase with hyphens: {u}")),
        Err(_) => Some(format!("{s:?} is not an AAGUID (a UUID)")),
    }
}

fn check_model(s: &str) -> Option<String> {
    let body = s.strip_suffix('*').unwrap_or(s);
    if body.trim().is_empty() {
        Some("a model pattern needs some text before `*`".into())
    } else if body.contains('*') {
        Some("`*` may only end a model pattern".into())
    } else {
        None
    }
}

/// A PEM `CERTIFICATE` block whose body is base64 DER (a SEQUENCE). The server parses the
/// certificate itself when the policy is applied.
fn check_pem_certificate(s: &str) -> Option<String> {
    use base64::Engine;
    let body = s
        .trim()
        .strip_prefix("-----BEGIN CERTIFICATE-----")
        .and_then(|b| b.strip_suffix("-----END CERTIFICATE-----"));
    let Some(body) = body else {
        return Some("expected one PEM certificate (-----BEGIN CERTIFICATE----- ...)".into());
    };
    let compact: String = body.split_whitespace().collect();
    match base64::engine::general_purpose::STANDARD.decode(compact) {
        Ok(der) if der.first() == Some(&0x30) => None,
        _ => Some("the PEM certificate's body is not base64 DER".into()),
    }
}

const FORMATS: &[&str] = &[
    "none",
    "packed",
    "tpm",
    "android-key",
    "android-safetynet",
    "fido-u2f",
    "apple",
];
const AUTHENTICATOR_KEYS: &[&str] = &[
    "attestation",
    "formats",
    "allow_aaguids",
    "deny_aaguids",
    "allow_models",
    "deny_models",
    "deny_statuses",
    "min_certification",
    "trust_mds",
    "trusted_roots",
    "synced",
    "user_verification",
];
const SESSION_KEYS: &[&str] = &["lifetime_secs", "idle_secs"];
const RECOVERY_KEYS: &[&str] = &[
    "codes",
    "codes_count",
    "case_checks",
    "case_approval",
    "cooling_off_secs",
    "link_ttl_secs",
    "case_ttl_secs",
    "old_credentials",
    "sensitive_lock_secs",
    "fraud_max_cases",
    "fraud_window_secs",
    "fraud_new_device_secs",
    "fraud_max_per_network",
    "fraud_hold_admins",
];

fn authenticator_rules(
    l: &mut Linter,
    t: &Table,
    path: &str,
    base: &AuthenticatorRules,
) -> AuthenticatorRules {
    let mut r = base.clone();
    if let Some(a) = l.choice(t, path, "attestation", &["any", "verified", "trusted"]) {
        r.attestation = match a.as_str() {
            "verified" => AttestationRequirement::Verified,
            "trusted" => AttestationRequirement::Trusted,
            _ => AttestationRequirement::Any,
        };
    }
    if let Some(f) = l.strings(t, path, "formats", |s| {
        (!FORMATS.contains(&s)).then(|| {
            format!(
                "unknown attestation format; expected one of: {}",
                FORMATS.join(", ")
            )
        })
    }) {
        r.formats = f;
    }
    if let Some(a) = l.strings(t, path, "allow_aaguids", check_aaguid) {
        r.allow_aaguids = a;
    }
    if let Some(d) = l.strings(t, path, "deny_aaguids", check_aaguid) {
        r.deny_aaguids = d;
    }
    if let Some(a) = l.strings(t, path, "allow_models", check_model) {
        r.allow_models = a;
    }
    if let Some(d) = l.strings(t, path, "deny_models", check_model) {
        r.deny_models = d;
    }
    if let Some(d) = l.strings(t, path, "deny_statuses", |s| {
        (!STATUSES.contains(&s)).then(|| {
            format!(
                "unknown FIDO MDS status; expected one of: {}",
                STATUSES.join(", ")
            )
        })
    }) {
        r.deny_statuses = d;
    }
    let levels: Vec<&str> = CertificationLevel::ALL.iter().map(|l| l.as_str()).collect();
    if let Some(c) = l.choice(t, path, "min_certification", &levels) {
        r.min_certification = CertificationLevel::parse(&c);
    }
    if let Some(b) = l.bool(t, path, "trust_mds") {
        r.trust_mds = b;
    }
    if let Some(roots) = l.strings(t, path, "trusted_roots", check_pem_certificate) {
        r.trusted_roots = roots;
    }
    if let Some(s) = l.choice(t, path, "synced", &["allow", "deny"]) {
        r.synced_allowed = s == "allow";
    }
    if let Some(u) = l.choice(t, path, "user_verification", &["preferred", "required"]) {
        r.user_verification_required = u == "required";
    }
    r
}

fn session_rules(l: &mut Linter, t: &Table, path: &str, base: &SessionRules) -> SessionRules {
    let mut r = base.clone();
    if let Some(n) = l.int(t, path, "lifetime_secs", 60, 90 * 24 * 3600) {
        r.lifetime_secs = n;
    }
    if let Some(n) = l.int(t, path, "idle_secs", 60, 90 * 24 * 3600) {
        r.idle_secs = n;
    }
    r
}

fn recovery_rules(l: &mut Linter, t: &Table, path: &str, base: &RecoveryRules) -> RecoveryRules {
    let mut r = base.clone();
    if let Some(c) = l.choice(t, path, "codes", &["allow", "deny"]) {
        r.codes_allowed = c == "allow";
    }
    if let Some(n) = l.int(t, path, "codes_count", 4, 20) {
        // In range 4..=20 by the check above, so the conversion cannot fail.
        r.codes_count = n as u32;
    }
    if let Some(checks) = l.strings(t, path, "case_checks", |s| {
        let ok = (1..=40).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        (!ok).then(|| "a check name is 1-40 characters of a-z, 0-9 and _".to_string())
    }) {
        r.case_checks = checks;
    }
    if let Some(b) = l.bool(t, path, "case_approval") {
        r.case_approval = b;
    }
    if let Some(n) = l.int(t, path, "cooling_off_secs", 0, 30 * 24 * 3600) {
        r.cooling_off_secs = n;
    }
    if let Some(n) = l.int(t, path, "link_ttl_secs", 60, 24 * 3600) {
        r.link_ttl_secs = n;
    }
    if let Some(n) = l.int(t, path, "case_ttl_secs", 3600, 90 * 24 * 3600) {
        r.case_ttl_secs = n;
    }
    if let Some(c) = l.choice(t, path, "old_credentials", &["revoke", "keep"]) {
        r.revoke_old_credentials = c == "revoke";
    }
    if let Some(n) = l.int(t, path, "sensitive_lock_secs", 0, 30 * 24 * 3600) {
        r.sensitive_lock_secs = n;
    }
    if let Some(n) = l.int(t, path, "fraud_max_cases", 1, 100) {
        r.fraud_max_cases = n as u32;
    }
    if let Some(n) = l.int(t, path, "fraud_window_secs", 3600, 90 * 24 * 3600) {
        r.fraud_window_secs = n;
    }
    if let Some(n) = l.int(t, path, "fraud_new_device_secs", 0, 30 * 24 * 3600) {
        r.fraud_new_device_secs = n;
    }
    if let Some(n) = l.int(t, path, "fraud_max_per_network", 1, 10_000) {
        r.fraud_max_per_network = n as u32;
    }
    if let Some(b) = l.bool(t, path, "fraud_hold_admins") {
        r.fraud_hold_admins = b;
    }
    r
}

/// A section with default keys and `[section.<population>]` override tables.
fn scoped<T: Clone>(
    l: &mut Linter,
    root: &Table,
    section: &str,
    keys: &[&str],
    populations: &[String],
    base: T,
    read: fn(&mut Linter, &Table, &str, &T) -> T,
) -> Scoped<T> {
    let Some(t) = l.table(root, "", section) else {
        return Scoped {
            default: base,
            by_population: vec![],
        };
    };
    let default = read(l, t, section, &base);
    let mut by_population = Vec::new();
    for (key, item) in t.iter() {
        if keys.contains(&key) {
            continue;
        }
        let path = join(section, key);
        match item {
            Item::Table(sub) if populations.iter().any(|p| p == key) => {
                l.unknown_keys(sub, &path, keys);
                by_population.push((key.to_string(), read(l, sub, &path, &default)));
            }
            Item::Table(_) => l.error(
                item.span(),
                &path,
                format!("{key:?} is not a population declared in `populations`"),
            ),
            _ => l.error(
                item.span(),
                &path,
                format!(
                    "unknown key; expected one of: {}, or a population's table",
                    keys.join(", ")
                ),
            ),
        }
    }
    Scoped {
        default,
        by_population,
    }
}

fn requirements(l: &mut Linter, t: &Table, key: &str, base: &[Requirement]) -> Vec<Requirement> {
    match l.strings(t, "assurance", key, |s| {
        Requirement::parse(s)
            .is_none()
            .then(|| "expected user_verified, device_bound or trusted_attestation".to_string())
    }) {
        Some(list) => list.iter().filter_map(|s| Requirement::parse(s)).collect(),
        None => base.to_vec(),
    }
}

fn step_up_rules(l: &mut Linter, root: &Table) -> Option<Vec<StepUpRule>> {
    let item = root.get("step_up")?;
    let Some(array) = item.as_array_of_tables() else {
        l.error(item.span(), "step_up", "expected [[step_up]] tables");
        return None;
    };
    let mut rules = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, t) in array.iter().enumerate() {
        let path = format!("step_up[{i}]");
        l.unknown_keys(t, &path, &["id", "actions", "level", "max_age_secs"]);
        let id = l.string(t, &path, "id");
        if let Some(id) = &id {
            if !is_name(id) {
                l.error(
                    t.get("id").and_then(Item::span),
                    &path,
                    "id must be 1-64 characters of a-z, 0-9, '-' and '_'",
                );
            } else if !ids.insert(id.clone()) {
                l.error(
                    t.get("id").and_then(Item::span),
                    &path,
                    format!("another step_up rule is also called {id:?}"),
                );
            }
        } else {
            l.error(t.span(), &path, "every step_up rule needs an id");
        }
        let actions = l.strings(t, &path, "actions", |a| {
            let body = a.strip_suffix('*').unwrap_or(a);
            (a.is_empty()
                || body.contains('*')
                || !body
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_' || c == '-'))
            .then(|| {
                "an action is a dotted name, optionally ending in * (e.g. admin.*)".to_string()
            })
        });
        let level = l
            .choice(t, &path, "level", &["aal1", "aal2", "aal3"])
            .and_then(|s| Aal::parse(&s));
        let max_age = l.int(t, &path, "max_age_secs", 1, 24 * 3600);
        match (id, actions, level, max_age) {
            (Some(id), Some(actions), Some(level), Some(max_age_secs)) if !actions.is_empty() => {
                rules.push(StepUpRule {
                    id,
                    actions,
                    level,
                    max_age_secs,
                })
            }
            _ => {
                // Values that were present but wrong are reported above; here, what is missing.
                match t.get("actions").and_then(Item::as_array) {
                    None if t.get("actions").is_none() => {
                        l.error(t.span(), &path, "every step_up rule needs actions")
                    }
                    Some(a) if a.is_empty() => {
                        l.error(t.span(), &path, "actions must name at least one action")
                    }
                    _ => {}
                }
                for (key, what) in [("level", "a level"), ("max_age_secs", "max_age_secs")] {
                    if t.get(key).is_none() {
                        l.error(t.span(), &path, format!("every step_up rule needs {what}"));
                    }
                }
            }
        }
    }
    Some(rules)
}

/// Parses a policy document. On any problem, returns all of them, in document order.
pub fn parse(text: &str) -> Result<Policy, Vec<LintError>> {
    let mut l = Linter {
        text,
        errors: vec![],
    };
    let doc = match ImDocument::parse(text) {
        Ok(d) => d,
        Err(e) => {
            l.error(e.span(), "", format!("not valid TOML: {}", e.message()));
            return Err(l.errors);
        }
    };
    let root = doc.as_table();
    l.unknown_keys(
        root,
        "",
        &[
            "version",
            "populations",
            "enrolment",
            "authenticators",
            "assurance",
            "step_up",
            "sessions",
            "recovery",
            "governance",
        ],
    );
    let mut policy = Policy::default();
    if let Some(t) = l.table(root, "", "governance") {
        l.unknown_keys(
            t,
            "governance",
            &[
                "dual_control",
                "approval_ttl_secs",
                "exception_max_days",
                "exception_notice_days",
                "deprovision",
                "client_max_days",
            ],
        );
        if let Some(acts) = l.strings(t, "governance", "dual_control", |s| {
            (!DUAL_CONTROL_ACTS.contains(&s)).then(|| {
                format!(
                    "unknown act; dual control applies to: {}",
                    DUAL_CONTROL_ACTS.join(", ")
                )
            })
        }) {
            policy.governance.dual_control = acts;
        }
        if let Some(n) = l.int(t, "governance", "approval_ttl_secs", 300, 30 * 24 * 3600) {
            policy.governance.approval_ttl_secs = n;
        }
        if let Some(n) = l.int(t, "governance", "exception_max_days", 1, 366) {
            policy.governance.exception_max_days = n;
        }
        if let Some(n) = l.int(t, "governance", "exception_notice_days", 0, 90) {
            policy.governance.exception_notice_days = n;
        }
        if let Some(d) = l.choice(t, "governance", "deprovision", &["revoke", "keep"]) {
            policy.governance.deprovision_revokes_credentials = d == "revoke";
        }
        if let Some(n) = l.int(t, "governance", "client_max_days", 1, 366) {
            policy.governance.client_max_days = n;
        }
    }
    match l.int(root, "", "version", 1, 1) {
        Some(v) => policy.version = v as u32,
        None if root.get("version").is_none() => l.error(
            Some(0..0),
            "version",
            "missing: start the document with `version = 1`",
        ),
        None => {}
    }
    if let Some(p) = l.strings(root, "", "populations", |s| {
        (!is_name(s))
            .then(|| "a population is 1-64 characters of a-z, 0-9, '-' and '_'".to_string())
    }) {
        policy.populations = p;
    }
    if let Some(t) = l.table(root, "", "enrolment") {
        l.unknown_keys(
            t,
            "enrolment",
            &[
                "invite_required",
                "max_passkeys",
                "require_two",
                "populations",
            ],
        );
        let e = &mut policy.enrolment;
        if let Some(b) = l.bool(t, "enrolment", "invite_required") {
            e.invite_required = b;
        }
        if let Some(n) = l.int(t, "enrolment", "max_passkeys", 1, 100) {
            e.max_passkeys = n as u32;
        }
        if let Some(b) = l.bool(t, "enrolment", "require_two") {
            e.require_two = b;
        }
        let known = policy.populations.clone();
        if let Some(p) = l.strings(t, "enrolment", "populations", |s| {
            (!known.iter().any(|k| k == s))
                .then(|| format!("{s:?} is not a population declared in `populations`"))
        }) {
            e.populations = p;
        }
        if e.require_two && e.max_passkeys < 2 {
            l.error(
                t.get("max_passkeys").and_then(Item::span),
                "enrolment.max_passkeys",
                "require_two needs max_passkeys of at least 2",
            );
        }
    }
    let pops = policy.populations.clone();
    policy.authenticators = scoped(
        &mut l,
        root,
        "authenticators",
        AUTHENTICATOR_KEYS,
        &pops,
        AuthenticatorRules::default(),
        authenticator_rules,
    );
    policy.sessions = scoped(
        &mut l,
        root,
        "sessions",
        SESSION_KEYS,
        &pops,
        SessionRules::default(),
        session_rules,
    );
    for (path, rules) in std::iter::once(("sessions".to_string(), &policy.sessions.default)).chain(
        policy
            .sessions
            .by_population
            .iter()
            .map(|(p, r)| (format!("sessions.{p}"), r)),
    ) {
        if rules.idle_secs > rules.lifetime_secs {
            l.error(None, &path, "idle_secs is longer than lifetime_secs");
        }
    }
    policy.recovery = scoped(
        &mut l,
        root,
        "recovery",
        RECOVERY_KEYS,
        &pops,
        RecoveryRules::default(),
        recovery_rules,
    );
    if let Some(t) = l.table(root, "", "assurance") {
        l.unknown_keys(t, "assurance", &["aal2", "aal3"]);
        policy.assurance.aal2 = requirements(&mut l, t, "aal2", &policy.assurance.aal2);
        policy.assurance.aal3 = requirements(&mut l, t, "aal3", &policy.assurance.aal3);
        if !policy
            .assurance
            .aal2
            .iter()
            .all(|r| policy.assurance.aal3.contains(r))
        {
            l.error(
                t.get("aal3").and_then(Item::span),
                "assurance.aal3",
                "aal3 must require everything aal2 requires",
            );
        }
    }
    if let Some(rules) = step_up_rules(&mut l, root) {
        policy.step_up = rules;
    }
    if l.errors.is_empty() {
        Ok(policy)
    } else {
        l.errors.sort_by_key(|e| (e.line, e.column));
        Err(l.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
version = 1
populations = ["regulated", "workforce"]

[enrolment]
invite_required = true
max_passkeys = 5
require_two = true

[authenticators]
attestation = "any"
deny_aaguids = ["00000000-0000-0000-0000-000000000001"]

[authenticators.regulated]
attestation = "trusted"
synced = "deny"
user_verification = "required"

[assurance]
aal2 = ["user_verified"]
aal3 = ["user_verified", "device_bound", "trusted_attestation"]

[[step_up]]
id = "admin"
actions = ["admin.*"]
level = "aal3"
max_age_secs = 600

[sessions]
lifetime_secs = 28800
idle_secs = 1800

[sessions.regulated]
lifetime_secs = 3600
idle_secs = 900
"#;

    #[test]
    fn a_complete_document_parses_with_overrides_on_top_of_defaults() {
        let p = parse(EXAMPLE).expect("valid");
        assert_eq!(p.enrolment.max_passkeys, 5);
        let (reg, path) = p
            .authenticators
            .for_populations("authenticators", &["regulated".into()]);
        assert_eq!(path, "authenticators.regulated");
        assert_eq!(reg.attestation, AttestationRequirement::Trusted);
        assert!(!reg.synced_allowed && reg.user_verification_required);
        assert_eq!(
            reg.deny_aaguids,
            vec!["00000000-0000-0000-0000-000000000001"],
            "inherits the default's deny list"
        );
        let (def, path) = p
            .authenticators
            .for_populations("authenticators", &["workforce".into()]);
        assert_eq!(
            (path.as_str(), def.synced_allowed),
            ("authenticators", true)
        );
        assert_eq!(p.step_up[0].level, Aal::Aal3);
        assert_eq!(
            p.sessions
                .for_populations("sessions", &["regulated".into()])
                .0
                .lifetime_secs,
            3600
        );
    }

    #[test]
    fn the_built_in_policy_round_trips_from_a_minimal_document() {
        assert_eq!(parse("version = 1\n").unwrap(), Policy::default());
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let bad = r#"version = 1
populations = ["regulated"]
colour = "blue"

[enrolment]
max_passkeys = 0
populations = ["contractors"]

[authenticators]
attestation = "sometimes"
formats = ["packed", "carrier-pigeon"]
deny_aaguids = ["not-a-uuid", "ABCDEF00-0000-0000-0000-000000000000"]

[authenticators.interns]
synced = "deny"

[[step_up]]
id = "admin"
actions = ["admin.*.x"]
level = "aal9"
max_age_secs = 600
"#;
        let errors = parse(bad).unwrap_err();
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.path.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (3, "colour"),
                (6, "enrolment.max_passkeys"),
                (7, "enrolment.populations"),
                (10, "authenticators.attestation"),
                (11, "authenticators.formats"),
                (12, "authenticators.deny_aaguids"),
                (12, "authenticators.deny_aaguids"),
                (14, "authenticators.interns"),
                (19, "step_up[0].actions"),
                (20, "step_up[0].level"),
            ],
            "{errors:#?}"
        );
        assert!(errors.iter().all(|e| !e.message.is_empty()));
    }

    #[test]
    fn invalid_toml_is_reported_with_its_position() {
        let errors = parse("version = 1\n[enrolment\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.starts_with("not valid TOML"));
    }

    #[test]
    fn a_missing_version_and_inconsistent_rules_are_errors() {
        let errors = parse("[enrolment]\nrequire_two = true\nmax_passkeys = 1\n[assurance]\naal2 = [\"user_verified\"]\naal3 = [\"device_bound\"]\n").unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"version"), "{errors:?}");
        assert!(paths.contains(&"enrolment.max_passkeys"), "{errors:?}");
        assert!(paths.contains(&"assurance.aal3"), "{errors:?}");
    }

    #[test]
    fn machine_client_governance_is_linted() {
        let p = parse("version = 1\n[governance]\ndual_control = [\"clients.create\"]\nclient_max_days = 30\n")
            .expect("valid");
        assert_eq!(p.governance.client_max_days, 30);
        assert!(p.governance.needs_approval("clients.create"));
        assert_eq!(
            parse("version = 1\n").unwrap().governance.client_max_days,
            90
        );
        let errors = parse(
            "version = 1\n[governance]\nclient_max_days = 0\n[authenticators]\nsynced = \"no\"\n",
        )
        .unwrap_err();
        let at: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.path.as_str())).collect();
        assert_eq!(
            at,
            vec![
                (3, "governance.client_max_days"),
                (5, "authenticators.synced")
            ],
            "every problem, not the first: {errors:#?}"
        );
        assert!(errors[0].message.contains("1 to 366"), "{errors:#?}");
        let errors =
            parse("version = 1\n[governance]\nclient_max_days = \"ninety\"\n").unwrap_err();
        assert_eq!(errors[0].message, "expected an integer");
    }

    #[test]
    fn recovery_codes_are_denied_unless_a_population_allows_them() {
        let p = parse("version = 1\n").unwrap();
        assert!(!p.recovery.default.codes_allowed, "safe default");
        assert_eq!(p.recovery.default.codes_count, 10);
        let p = parse(
            "version = 1\npopulations = [\"regulated\", \"workforce\"]\n[recovery]\ncodes = \"allow\"\ncodes_count = 12\n[recovery.regulated]\ncodes = \"deny\"\n",
        )
        .expect("valid");
        let (reg, path) = p
            .recovery
            .for_populations("recovery", &["regulated".into()]);
        assert_eq!(path, "recovery.regulated");
        assert!(!reg.codes_allowed);
        assert_eq!(reg.codes_count, 12, "inherits the default's count");
        let (wf, _) = p
            .recovery
            .for_populations("recovery", &["workforce".into()]);
        assert!(wf.codes_allowed);
    }

    #[test]
    fn recovery_case_rules_have_safe_defaults_and_per_population_overrides() {
        let p = parse("version = 1\n").unwrap();
        let d = &p.recovery.default;
        assert_eq!(d.case_checks, vec!["identity_document".to_string()]);
        assert_eq!(d.cooling_off_secs, 86_400);
        assert!(d.revoke_old_credentials && d.fraud_hold_admins && !d.case_approval);
        let p = parse(
            "version = 1\npopulations = [\"regulated\"]\n[recovery]\ncooling_off_secs = 0\n[recovery.regulated]\ncase_checks = [\"identity_document\", \"manager_callback\"]\ncase_approval = true\ncooling_off_secs = 86400\nold_credentials = \"keep\"\nfraud_max_cases = 1\n",
        )
        .unwrap();
        assert_eq!(p.recovery.default.cooling_off_secs, 0);
        let (r, path) = p
            .recovery
            .for_populations("recovery", &["regulated".into()]);
        assert_eq!(path, "recovery.regulated");
        assert_eq!(r.case_checks.len(), 2);
        assert!(r.case_approval && !r.revoke_old_credentials);
        assert_eq!((r.cooling_off_secs, r.fraud_max_cases), (86_400, 1));
        let errors = parse(
            "version = 1\n[recovery]\ncase_checks = [\"ID card\"]\ncooling_off_secs = -1\nold_credentials = \"burn\"\nlink_ttl_secs = 5\n",
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "recovery.case_checks",
                "recovery.cooling_off_secs",
                "recovery.old_credentials",
                "recovery.link_ttl_secs"
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn recovery_rules_are_linted() {
        let bad = "version = 1\npopulations = [\"regulated\"]\n[recovery]\ncodes = \"maybe\"\ncodes_count = 3\nlinks = true\n[recovery.regulated]\ncodes_count = 21\n[recovery.interns]\ncodes = \"allow\"\n";
        let errors = parse(bad).unwrap_err();
        let at: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.path.as_str())).collect();
        assert_eq!(
            at,
            vec![
                (4, "recovery.codes"),
                (5, "recovery.codes_count"),
                (6, "recovery.links"),
                (8, "recovery.regulated.codes_count"),
                (9, "recovery.interns"),
            ],
            "{errors:#?}"
        );
        assert!(errors[1].message.contains("4 to 20"), "{errors:#?}");
    }

    #[test]
    fn mds_rules_are_linted() {
        let bad = r#"version = 1
[authenticators]
deny_statuses = ["REVOKED", "SOMEWHAT_BROKEN"]
min_certification = "L4"
allow_models = ["*", "Yubi*Key"]
trusted_roots = ["not a certificate", """-----BEGIN CERTIFICATE-----
!!!!
-----END CERTIFICATE-----"""]
trust_mds = "yes"
"#;
        let errors = parse(bad).unwrap_err();
        let at: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.path.as_str())).collect();
        for expected in [
            (3, "authenticators.deny_statuses"),
            (4, "authenticators.min_certification"),
            (5, "authenticators.allow_models"),
            (6, "authenticators.trusted_roots"),
            (9, "authenticators.trust_mds"),
        ] {
            assert!(
                at.contains(&expected),
                "{expected:?} missing from {errors:#?}"
            );
        }
        assert_eq!(
            errors
                .iter()
                .filter(|e| e.path == "authenticators.trusted_roots")
                .count(),
            2,
            "{errors:#?}"
        );
        let good = parse(
            "version = 1\n[authenticators]\nmin_certification = \"L1plus\"\ndeny_statuses = []\ntrust_mds = false\n",
        )
        .expect("valid");
        assert_eq!(
            good.authenticators.default.min_certification,
            Some(crate::mds::CertificationLevel::L1Plus)
        );
        assert!(good.authenticators.default.deny_statuses.is_empty());
        assert!(!good.authenticators.default.trust_mds);
    }
}
