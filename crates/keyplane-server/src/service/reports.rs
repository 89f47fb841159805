//! Reports for administrators, auditors and governance: passkey coverage, drift from the active
//! policy, exceptions, fraud alerts, machine clients, and how the tenant's configuration maps to NIST CSF 2.0
//! PR.AA, NIST SP 800-63B and the OWASP Non-Human Identities Top 10. Every figure is computed
//! from the live data when asked; nothing is cached.

use super::App;
use keyplane_core::policy::{self, Requirement, Subject};
use keyplane_core::*;
use keyplane_store::AuditFilter;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Passkey coverage of one population (or of everyone, `(all)`).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Coverage {
    /// Active users.
    pub users: u64,
    /// Users with no active passkey the policy accepts.
    pub users_without_compliant: u64,
    pub users_with_one_compliant: u64,
    pub users_with_two_or_more_compliant: u64,
    /// Active credentials.
    pub credentials: u64,
    /// Active credentials the active policy no longer accepts (exceptions considered).
    pub non_compliant: u64,
    pub synced: u64,
    pub device_bound: u64,
    /// Credentials by authenticator model (name, or AAGUID when unknown).
    pub models: BTreeMap<String, u64>,
}

/// The coverage report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CoverageReport {
    pub populations: BTreeMap<String, Coverage>,
    /// Sign-ins in the window by the level they reached (all with passkeys, so all phishing-
    /// resistant; the level says how strongly).
    pub sign_ins_by_level: BTreeMap<String, u64>,
    /// The same per UTC day (`YYYY-MM-DD`), for the dashboard's chart over time.
    pub sign_ins_by_day: BTreeMap<String, BTreeMap<String, u64>>,
    pub window_days: i64,
}

/// Why a credential no longer complies.
#[derive(Clone, Debug, Serialize)]
pub struct DriftItem {
    pub credential: CredentialRecordId,
    pub user: UserId,
    pub username: String,
    pub model: String,
    pub rules: Vec<String>,
    pub codes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DriftReport {
    pub policy_version: Option<i64>,
    pub non_compliant: u64,
    pub by_rule: BTreeMap<String, u64>,
    pub by_model: BTreeMap<String, u64>,
    pub credentials: Vec<DriftItem>,
}

/// One row of the controls report.
#[derive(Clone, Debug, Serialize)]
pub struct ControlRow {
    pub framework: &'static str,
    pub control: &'static str,
    pub title: &'static str,
    /// `pass`, `fail` or `not_applicable`.
    pub status: &'static str,
    pub evidence: String,
}

fn model_name(catalogue: &super::Catalogue, aaguid: &str) -> String {
    catalogue
        .name(aaguid)
        .map(|n| n.name)
        .unwrap_or_else(|| aaguid.to_string())
}

impl App {
    /// Active users with their populations and active credentials: the narrow bulk read that
    /// policy simulation uses, so reports over a large tenant stay fast.
    async fn subjects(&self, tenant: &Tenant) -> Result<Vec<keyplane_store::PolicySubject>, Error> {
        Ok(self.store.policy_subjects(&tenant.id, &|_| {}).await?)
    }

    /// Coverage per population, plus sign-ins by level over the last `days` days (from the
    /// audit log).
    pub async fn coverage_report(
        &self,
        tenant: &Tenant,
        days: i64,
    ) -> Result<CoverageReport, Error> {
        let (subjects, (sign_ins, by_day)) =
            tokio::try_join!(self.subjects(tenant), self.sign_ins_by_level(tenant, days))?;
        let mut report = self.coverage_of(tenant, &subjects, sign_ins, days).await?;
        report.sign_ins_by_day = by_day;
        Ok(report)
    }

    async fn coverage_of(
        &self,
        tenant: &Tenant,
        subjects: &[keyplane_store::PolicySubject],
        sign_ins: BTreeMap<String, u64>,
        days: i64,
    ) -> Result<CoverageReport, Error> {
        let active = self.active_policy(tenant).await?;
        let catalogue = self.catalogue().await?;
        let waivers = self
            .store
            .active_exceptions(&tenant.id, self.clock.now())
            .await?;
        let mut report = CoverageReport {
            window_days: days,
            sign_ins_by_level: sign_ins,
            ..Default::default()
        };
        let mut memo = Violations::default();
        let mut names: std::collections::HashMap<&str, String> = Default::default();
        for c in subjects.iter().flat_map(|u| &u.credentials) {
            if !names.contains_key(c.aaguid.as_str()) {
                names.insert(&c.aaguid, model_name(&catalogue, &c.aaguid));
            }
        }
        for u in subjects {
            let pops = &u.populations;
            let subject = Subject {
                populations: pops.clone(),
            };
            let rules: Vec<&str> = waivers
                .iter()
                .filter(|e| e.covers(&u.user_id, pops))
                .map(|e| e.rule.as_str())
                .collect();
            let mut compliant = 0;
            let mut models: Vec<&str> = Vec::with_capacity(u.credentials.len());
            let mut synced = 0u64;
            for c in &u.credentials {
                synced += u64::from(c.backup_eligible);
                models.push(names[c.aaguid.as_str()].as_str());
                let reasons = memo.of(&active.policy, &catalogue, &subject, c);
                if reasons.iter().all(|r| rules.contains(&r.as_str())) {
                    compliant += 1;
                }
            }
            let n = u.credentials.len() as u64;
            for key in std::iter::once("(all)").chain(pops.iter().map(String::as_str)) {
                let cov = report.populations.entry(key.to_string()).or_default();
                cov.users += 1;
                match compliant {
                    0 => cov.users_without_compliant += 1,
                    1 => cov.users_with_one_compliant += 1,
                    _ => cov.users_with_two_or_more_compliant += 1,
                }
                cov.credentials += n;
                cov.non_compliant += n - compliant as u64;
                cov.synced += synced;
                cov.device_bound += n - synced;
                for m in &models {
                    match cov.models.get_mut(*m) {
                        Some(n) => *n += 1,
                        None => {
                            cov.models.insert(m.to_string(), 1);
                        }
                    }
                }
            }
        }
        Ok(report)
    }

    /// Sign-ins in the last `days` days by the level they reached (from the audit log), in all
    /// and per UTC day.
    #[allow(clippy::type_complexity)]
    async fn sign_ins_by_level(
        &self,
        tenant: &Tenant,
        days: i64,
    ) -> Result<
        (
            BTreeMap<String, u64>,
            BTreeMap<String, BTreeMap<String, u64>>,
        ),
        Error,
    > {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_day: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let since = self.clock.now().plus_secs(-days * 86_400);
        let mut after = 0;
        loop {
            let page = self
                .store
                .list_audit_events(
                    &tenant.id,
                    &AuditFilter {
                        after_seq: after,
                        since: Some(since),
                        action: Some("authentication.succeeded".into()),
                        limit: 1000,
                        ..Default::default()
                    },
                )
                .await?;
            for e in &page {
                let level = serde_json::from_str::<Value>(&e.details)
                    .ok()
                    .and_then(|d| d["aal"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "unknown".into());
                let day = e.time.to_rfc3339()[..10].to_string();
                *by_day
                    .entry(day)
                    .or_default()
                    .entry(level.clone())
                    .or_default() += 1;
                *out.entry(level).or_default() += 1;
            }
            match page.last() {
                Some(last) if page.len() == 1000 => after = last.seq,
                _ => break,
            }
        }
        Ok((out, by_day))
    }

    /// Active credentials the active policy no longer accepts (exceptions taken into account),
    /// and why.
    pub async fn drift_report(&self, tenant: &Tenant) -> Result<DriftReport, Error> {
        let subjects = self.subjects(tenant).await?;
        self.drift_of(tenant, subjects).await
    }

    async fn drift_of(
        &self,
        tenant: &Tenant,
        subjects: Vec<keyplane_store::PolicySubject>,
    ) -> Result<DriftReport, Error> {
        let active = self.active_policy(tenant).await?;
        let catalogue = self.catalogue().await?;
        let waivers = self
            .store
            .active_exceptions(&tenant.id, self.clock.now())
            .await?;
        let mut report = DriftReport {
            policy_version: active.version,
            ..Default::default()
        };
        let mut memo = Violations::default();
        for u in subjects {
            let subject = Subject {
                populations: u.populations.clone(),
            };
            for c in u.credentials {
                let reasons: Vec<(String, &'static str)> = memo
                    .detailed(&active.policy, &catalogue, &subject, &c)
                    .iter()
                    .filter(|(rule, _)| {
                        !waivers
                            .iter()
                            .any(|e| e.covers(&u.user_id, &u.populations) && e.rule == *rule)
                    })
                    .cloned()
                    .collect();
                if reasons.is_empty() {
                    continue;
                }
                let model = model_name(&catalogue, &c.aaguid);
                report.non_compliant += 1;
                *report.by_model.entry(model.clone()).or_default() += 1;
                for (rule, _) in &reasons {
                    *report.by_rule.entry(rule.clone()).or_default() += 1;
                }
                report.credentials.push(DriftItem {
                    credential: c.id,
                    user: u.user_id.clone(),
                    username: u.username.clone(),
                    model,
                    rules: reasons.iter().map(|(r, _)| r.clone()).collect(),
                    codes: reasons.iter().map(|(_, c)| c.to_string()).collect(),
                });
            }
        }
        Ok(report)
    }

    /// Exceptions: active, expiring within `days`, and ended.
    pub async fn exceptions_report(&self, tenant: &Tenant, days: i64) -> Result<Value, Error> {
        let now = self.clock.now();
        let horizon = now.plus_secs(days * 86_400);
        let all = self.list_exceptions(tenant).await?;
        let active: Vec<_> = all.iter().filter(|e| e.status == "active").collect();
        let expiring: Vec<_> = active.iter().filter(|e| e.expires_at <= horizon).collect();
        Ok(json!({
            "active": active.len(),
            "expiring_within_days": days,
            "expiring": expiring.len(),
            "expired": all.iter().filter(|e| e.status == "expired").count(),
            "revoked": all.iter().filter(|e| e.status == "revoked").count(),
            "exceptions": all,
        }))
    }

    /// Fraud alerts by state and kind.
    pub async fn fraud_report(&self, tenant: &Tenant) -> Result<Value, Error> {
        let alerts = self.list_fraud_alerts(tenant).await?;
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        for a in &alerts {
            *by_state.entry(a.status.clone()).or_default() += 1;
            *by_kind.entry(a.kind.clone()).or_default() += 1;
        }
        Ok(json!({ "by_state": by_state, "by_kind": by_kind, "alerts": alerts }))
    }

    /// The tenant's configuration against NIST CSF 2.0 PR.AA, NIST SP 800-63B and the OWASP
    /// Non-Human Identities Top 10: each row pass, fail or not applicable, with its evidence.
    pub async fn controls_report(&self, tenant: &Tenant) -> Result<Vec<ControlRow>, Error> {
        let active = self.active_policy(tenant).await?;
        let p = &active.policy;
        let (subjects, sign_ins) =
            tokio::try_join!(self.subjects(tenant), self.sign_ins_by_level(tenant, 30))?;
        let catalogue = self.catalogue().await?;
        let compromised: u64 = subjects
            .iter()
            .flat_map(|u| &u.credentials)
            .filter(|c| {
                catalogue.mds_entry(&c.aaguid).is_some_and(|e| {
                    e.statuses()
                        .any(|s| keyplane_core::mds::COMPROMISE_STATUSES.contains(&s))
                })
            })
            .count() as u64;
        let coverage = self.coverage_of(tenant, &subjects, sign_ins.0, 30).await?;
        let all = coverage
            .populations
            .get("(all)")
            .cloned()
            .unwrap_or_default();
        drop(subjects);
        let open_alerts = self
            .list_fraud_alerts(tenant)
            .await?
            .iter()
            .filter(|a| a.status == "open")
            .count();
        let admin_rule = p
            .step_up
            .iter()
            .find(|r| r.actions.iter().any(|a| a == "admin.*"));
        let aal3_reachable = p.assurance.aal3.contains(&Requirement::DeviceBound)
            && p.assurance.aal3.contains(&Requirement::TrustedAttestation)
            && p.assurance.aal3.contains(&Requirement::UserVerified);
        let s = &p.sessions.default;
        let pass = |ok: bool| if ok { "pass" } else { "fail" };
        let row = |framework, control, title, status, evidence: String| ControlRow {
            framework,
            control,
            title,
            status,
            evidence,
        };
        let mut rows = vec![
            row("NIST CSF 2.0", "PR.AA-01", "Identities and credentials for authorized users are managed",
                pass(all.users_without_compliant == 0),
                format!("{} active users; {} without a compliant passkey; {} with two or more", all.users, all.users_without_compliant, all.users_with_two_or_more_compliant)),
            row("NIST CSF 2.0", "PR.AA-02", "Identities are proofed and bound to credentials",
                pass(p.enrolment.invite_required),
                format!("enrolment.invite_required = {}; help-desk recovery checks arrive with account recovery", p.enrolment.invite_required)),
            row("NIST CSF 2.0", "PR.AA-03", "Users, services and hardware are authenticated",
                pass(all.non_compliant == 0 && compromised == 0),
                format!("passkeys only (no passwords); {} credentials non-compliant with policy version {:?}; {} of a model with a compromise status in MDS", all.non_compliant, active.version, compromised)),
            row("NIST CSF 2.0", "PR.AA-04", "Identity assertions are protected, conveyed and verified",
                "not_applicable",
                "Keyplane issues no federation assertions yet (OpenID Connect arrives later); sessions are 256-bit tokens stored hashed".into()),
            row("NIST CSF 2.0", "PR.AA-05", "Access permissions are defined in a policy, managed, enforced and reviewed",
                pass(active.version.is_some() && admin_rule.is_some()),
                format!("policy version {:?}; administrative step-up: {}; dual control on {}", active.version,
                    admin_rule.map(|r| format!("{} within {} s", r.level.as_str(), r.max_age_secs)).unwrap_or_else(|| "none".into()),
                    if p.governance.dual_control.is_empty() { "nothing".into() } else { p.governance.dual_control.join(", ") })),
            row("NIST CSF 2.0", "PR.AA-06", "Physical access to assets is managed",
                "not_applicable", "outside Keyplane's scope".into()),
            row("NIST SP 800-63B", "AAL2", "Multi-factor: possession and user verification",
                pass(p.assurance.aal2.contains(&Requirement::UserVerified)),
                format!("assurance.aal2 = {:?}", p.assurance.aal2.iter().map(|r| r.as_str()).collect::<Vec<_>>())),
            row("NIST SP 800-63B", "AAL3", "Hardware-bound, verifier-impersonation resistant authenticator",
                pass(aal3_reachable),
                format!("assurance.aal3 = {:?}; {} device-bound credentials", p.assurance.aal3.iter().map(|r| r.as_str()).collect::<Vec<_>>(), all.device_bound)),
            row("NIST SP 800-63B", "Reauthentication", "AAL2 sessions: at most 24 h, 1 h idle",
                pass(s.lifetime_secs <= 24 * 3600 && s.idle_secs <= 3600),
                format!("sessions.lifetime_secs = {}, idle_secs = {}", s.lifetime_secs, s.idle_secs)),
            row("OWASP NHI Top 10", "NHI-03", "Vulnerable third-party NHI (authenticator models with compromise reports)",
                pass(compromised == 0),
                format!("{compromised} active credentials of a model MDS reports compromised; denied statuses: {}", p.authenticators.default.deny_statuses.join(", "))),
            row("OWASP NHI Top 10", "NHI-10", "Human use of NHI / fraud signals",
                pass(open_alerts == 0),
                format!("{open_alerts} open fraud alerts")),
        ];
        rows.extend(self.client_controls(tenant).await?);
        Ok(rows)
    }

    /// Machine clients that are not revoked, with their findings, and how many have each.
    pub async fn clients_report(&self, tenant: &Tenant) -> Result<Value, Error> {
        let mut findings: BTreeMap<&str, u64> = BTreeMap::new();
        let mut clients = vec![];
        for o in self.list_clients(tenant).await? {
            if o.status == ClientStatus::Revoked {
                continue;
            }
            for f in &o.findings {
                *findings.entry(f).or_default() += 1;
            }
            let c = &o.client;
            clients.push(json!({
                "id": c.id,
                "name": c.name,
                "kind": c.kind.as_str(),
                "owner": c.owner,
                "owner_username": o.owner.as_ref().map(|u| &u.username),
                "scopes": c.scopes.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "status": o.status.as_str(),
                "expires_at": c.expires_at.to_rfc3339(),
                "rotated_at": c.rotated_at.map(|t| t.to_rfc3339()),
                "last_used_at": c.last_used_at.map(|t| t.to_rfc3339()),
                "findings": o.findings,
            }));
        }
        Ok(json!({ "findings": findings, "clients": clients }))
    }

    /// Rows about machine clients: offboarding (NHI-01) and long-lived secrets (NHI-07).
    async fn client_controls(&self, tenant: &Tenant) -> Result<Vec<ControlRow>, Error> {
        let now = self.clock.now();
        let max_days = self
            .active_policy(tenant)
            .await?
            .policy
            .governance
            .client_max_days;
        let active: Vec<_> = self
            .list_clients(tenant)
            .await?
            .into_iter()
            .filter(|o| o.status == ClientStatus::Active)
            .collect();
        let with = |f: &str| active.iter().filter(|o| o.findings.contains(&f)).count();
        let (orphaned, unused, never_rotated) = (
            with("owner_inactive"),
            with("unused"),
            with("never_rotated"),
        );
        let secret_age_days =
            |c: &MachineClient| (now.0 - c.rotated_at.unwrap_or(c.created_at).0) / 86_400_000;
        let oldest = active
            .iter()
            .map(|o| secret_age_days(&o.client))
            .max()
            .unwrap_or(0);
        let offboarding = if active.is_empty() {
            ("not_applicable", "no active machine clients".to_string())
        } else {
            (
                if orphaned == 0 && unused == 0 { "pass" } else { "fail" },
                format!(
                    "{} active machine clients; {orphaned} whose owner is no longer an active administrator (they no longer work: revoke them); {unused} unused for {} days",
                    active.len(),
                    client::STALE_AFTER_DAYS
                ),
            )
        };
        Ok(vec![
            ControlRow {
                framework: "OWASP NHI Top 10",
                control: "NHI-01",
                title: "Improper offboarding (machine clients of departed owners, unused clients)",
                status: offboarding.0,
                evidence: offboarding.1,
            },
            ControlRow {
                framework: "OWASP NHI Top 10",
                control: "NHI-07",
                title: "Long-lived secrets (machine client lifetime and rotation)",
                status: if max_days <= client::DEFAULT_LIFETIME_DAYS && oldest <= max_days {
                    "pass"
                } else {
                    "fail"
                },
                evidence: format!(
                    "governance.client_max_days = {max_days}; {} active machine clients; {never_rotated} with the secret from creation for {} days or more; oldest secret {oldest} days",
                    active.len(),
                    client::STALE_AFTER_DAYS
                ),
            },
        ])
    }
}

/// The reports there are.
pub const REPORTS: &[&str] = &[
    "coverage",
    "drift",
    "exceptions",
    "fraud",
    "clients",
    "controls",
    "campaigns",
];

impl App {
    /// A report by name, as JSON. `days`: the window of `coverage` (sign-ins) and `exceptions`
    /// (expiring within).
    pub async fn report(&self, tenant: &Tenant, name: &str, days: i64) -> Result<Value, Error> {
        if !(1..=366).contains(&days) {
            return Err(Error::invalid("invalid_days", "days must be 1-366"));
        }
        let to_json = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| Error::internal(format!("encoding a report: {e}")))
        };
        match name {
            "coverage" => to_json(serde_json::to_value(
                self.coverage_report(tenant, days).await?,
            )),
            "drift" => to_json(serde_json::to_value(self.drift_report(tenant).await?)),
            "exceptions" => self.exceptions_report(tenant, days).await,
            "fraud" => self.fraud_report(tenant).await,
            "clients" => self.clients_report(tenant).await,
            "controls" => to_json(serde_json::to_value(self.controls_report(tenant).await?)),
            "campaigns" => self.campaigns_report(tenant).await,
            _ => Err(Error::not_found(
                "report_not_found",
                format!("no report {name:?}; there are: {}", REPORTS.join(", ")),
            )),
        }
    }
}

/// A report's rows for a table or CSV: (columns, rows).
pub fn report_rows(name: &str, report: &Value) -> (Vec<&'static str>, Vec<Value>) {
    let list = |key: &str| report[key].as_array().cloned().unwrap_or_default();
    match name {
        "coverage" => (
            vec![
                "population",
                "users",
                "users_without_compliant",
                "users_with_one_compliant",
                "users_with_two_or_more_compliant",
                "credentials",
                "synced",
                "device_bound",
            ],
            report["populations"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(p, c)| {
                            let mut row = c.clone();
                            row["population"] = json!(p);
                            row
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "drift" => (
            vec!["credential", "username", "model", "rules", "codes"],
            list("credentials"),
        ),
        "exceptions" => (
            vec![
                "id",
                "subject",
                "rule",
                "status",
                "expires_at",
                "requested_by",
                "approved_by",
            ],
            list("exceptions"),
        ),
        "fraud" => (
            vec![
                "id",
                "kind",
                "status",
                "user_id",
                "credential_id",
                "resolution",
            ],
            list("alerts"),
        ),
        "clients" => (
            vec![
                "id",
                "name",
                "owner_username",
                "scopes",
                "status",
                "expires_at",
                "rotated_at",
                "last_used_at",
                "findings",
            ],
            list("clients"),
        ),
        "campaigns" => (
            vec![
                "id",
                "aaguid",
                "model",
                "action",
                "source",
                "status",
                "affected",
                "marked",
                "re_enrolled",
                "remaining",
                "started_at",
                "started_by",
                "closed_at",
            ],
            list("campaigns"),
        ),
        _ => (
            vec!["framework", "control", "status", "title", "evidence"],
            report.as_array().cloned().unwrap_or_default(),
        ),
    }
}

fn csv_cell(v: Option<&Value>) -> String {
    let text = match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| csv_cell(Some(x)))
            .collect::<Vec<_>>()
            .join(";"),
        Some(Value::Object(o)) if o.contains_key("type") && o.contains_key("id") => format!(
            "{}:{}",
            o["type"].as_str().unwrap_or_default(),
            o["id"].as_str().unwrap_or_default()
        ),
        Some(other) => other.to_string(),
    };
    // RFC 4180 quoting; a leading formula character is neutralised for spreadsheets.
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// RFC 4180 CSV with a header line.
pub fn csv(columns: &[&str], rows: &[Value]) -> String {
    let mut out = columns.join(",");
    out.push_str("\r\n");
    for r in rows {
        let cells: Vec<String> = columns.iter().map(|c| csv_cell(r.get(*c))).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let rows = vec![
            json!({"a": "plain", "b": "with, comma"}),
            json!({"a": "say \"hi\"", "b": "=HYPERLINK(1)"}),
            json!({"a": ["x", "y"], "b": null}),
        ];
        assert_eq!(
            csv(&["a", "b"], &rows),
            "a,b\r\nplain,\"with, comma\"\r\n\"say \"\"hi\"\"\",'=HYPERLINK(1)\r\nx;y,\r\n"
        );
    }
}

/// Violations by (populations, credential facts): a tenant has few distinct combinations, so each
/// is evaluated once per report however many credentials share it.
#[derive(Default)]
struct Violations {
    seen: std::collections::HashMap<String, Vec<(String, &'static str)>>,
}

impl Violations {
    fn detailed(
        &mut self,
        policy: &keyplane_core::policy::Policy,
        catalogue: &super::Catalogue,
        subject: &Subject,
        c: &keyplane_store::CredentialFacts,
    ) -> &[(String, &'static str)] {
        let key = format!(
            "{}|{}|{}|{}|{}|{}|{}",
            subject.populations.join(","),
            c.aaguid,
            c.attestation_format,
            c.attestation_type,
            c.attestation_trusted,
            c.backup_eligible,
            c.user_verified
        );
        self.seen.entry(key).or_insert_with(|| {
            policy::authenticator_violations(policy, subject, &catalogue.facts_of_parts(c.clone()))
                .into_iter()
                .map(|r| (r.rule, r.code))
                .collect()
        })
    }

    /// The rule paths only.
    fn of(
        &mut self,
        policy: &keyplane_core::policy::Policy,
        catalogue: &super::Catalogue,
        subject: &Subject,
        c: &keyplane_store::CredentialFacts,
    ) -> Vec<String> {
        self.detailed(policy, catalogue, subject, c)
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }
}
