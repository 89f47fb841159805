//! The tenant's policy: reading the active version (or the built-in one), activating a new
//! version (linted first, audited, versioned), rolling back, and setting users' populations.

use super::App;
use keyplane_core::audit::Caller;
use keyplane_core::policy::{self, LintError, Policy, Subject};
use keyplane_core::*;
use keyplane_store::{AuditBatch, PolicyVersion};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What applying (or rolling back) a policy did.
#[derive(Clone, Debug)]
pub enum PolicyChange {
    Applied {
        version: i64,
    },
    /// Dual control: nothing changed yet; a second administrator must approve this request.
    AwaitingApproval(Box<Approval>),
}

/// Why a policy could not be activated.
#[derive(Debug)]
pub enum ApplyError {
    Lint(Vec<LintError>),
    Other(Error),
}

impl From<Error> for ApplyError {
    fn from(e: Error) -> Self {
        ApplyError::Other(e)
    }
}

/// How far a simulation has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimulationProgress {
    /// Reading the tenant's users, memberships and credentials: rows read so far.
    Loading { rows: u64 },
    /// Evaluating: users done, of how many.
    Evaluating { users: u64, of: u64 },
}

/// The policy in force: its version (`None` = the built-in policy) and content.
pub struct ActivePolicy {
    pub version: Option<i64>,
    pub policy: Arc<Policy>,
}

/// Parsed policies by tenant and version. Versions never change once stored, so an entry is
/// valid for as long as that version is the active one; each request still asks the database
/// which version is active, so an activation on any node applies at once.
#[derive(Default)]
pub(crate) struct PolicyCache(Mutex<HashMap<TenantId, (i64, Arc<Policy>)>>);

impl App {
    pub async fn active_policy(&self, tenant: &Tenant) -> Result<ActivePolicy, Error> {
        let Some(version) = self.store.active_policy_version(&tenant.id).await? else {
            return Ok(ActivePolicy {
                version: None,
                policy: Arc::new(Policy::default()),
            });
        };
        if let Some((v, p)) = self
            .policy_cache
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant.id)
        {
            if *v == version {
                return Ok(ActivePolicy {
                    version: Some(version),
                    policy: p.clone(),
                });
            }
        }
        let Some(stored) = self.store.active_policy(&tenant.id).await? else {
            return Ok(ActivePolicy {
                version: None,
                policy: Arc::new(Policy::default()),
            });
        };
        // Only linted documents are stored, so this parses; if it does not, the database was
        // changed behind Keyplane's back.
        let policy = Arc::new(policy::parse(&stored.document).map_err(|errors| {
            Error::internal(format!(
                "stored policy version {} does not parse: {}",
                stored.version, errors[0]
            ))
        })?);
        self.policy_cache
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.id.clone(), (stored.version, policy.clone()));
        Ok(ActivePolicy {
            version: Some(stored.version),
            policy,
        })
    }

    /// The active version's document, for display (`None`: the built-in policy).
    pub async fn active_policy_document(
        &self,
        tenant: &Tenant,
    ) -> Result<Option<PolicyVersion>, Error> {
        Ok(self.store.active_policy(&tenant.id).await?)
    }

    /// Lints `document` and, unless the *active* policy puts `policy.apply` under dual control,
    /// stores it as the next version and activates it (`policy.activated`). Under dual control
    /// it opens a request for a second administrator instead. (The active policy decides, not
    /// the candidate: a document cannot lift its own dual control.)
    pub async fn apply_policy(
        &self,
        tenant: &Tenant,
        document: &str,
        caller: &Caller,
    ) -> Result<PolicyChange, ApplyError> {
        lint_policy(document).map_err(ApplyError::Lint)?;
        let governance = self.active_policy(tenant).await?.policy.governance.clone();
        if governance.needs_approval("policy.apply") {
            let digest = hex::encode(Sha256::digest(document.as_bytes()));
            let approval = self
                .request_approval(
                    tenant,
                    "policy.apply",
                    json!({ "document": document, "sha256": digest }),
                    format!(
                        "activate a new policy version (sha256 {}, {} bytes)",
                        &digest[..16],
                        document.len()
                    ),
                    &governance,
                    caller,
                )
                .await?;
            return Ok(PolicyChange::AwaitingApproval(Box::new(approval)));
        }
        let version = self
            .activate_policy_now(tenant, document, caller, None)
            .await?;
        Ok(PolicyChange::Applied { version })
    }

    /// Stores and activates a linted document, naming the approval that allowed it.
    pub(crate) async fn activate_policy_now(
        &self,
        tenant: &Tenant,
        document: &str,
        caller: &Caller,
        approval: Option<&Approval>,
    ) -> Result<i64, ApplyError> {
        let parsed = lint_policy(document).map_err(ApplyError::Lint)?;
        let digest = hex::encode(Sha256::digest(document.as_bytes()));
        let event = caller
            .event("policy.activated", "tenant", tenant.id.as_str())
            .details(json!({
                "sha256": digest,
                "populations": parsed.populations,
                "approval": approval.map(|a| a.id.as_str()),
                "requested_by": approval.map(|a| a.requested_by.as_str()),
            }));
        let now = self.clock.now();
        let version = self
            .store
            .activate_policy(
                &tenant.id,
                document,
                &caller.actor.id,
                AuditBatch::new(now, &[event]),
            )
            .await
            .map_err(|e| ApplyError::Other(e.into()))?;
        Ok(version)
    }

    /// Makes an earlier version active again (`policy.activated` with `rollback`), or, under
    /// dual control for `policy.rollback`, asks a second administrator.
    pub async fn rollback_policy(
        &self,
        tenant: &Tenant,
        version: i64,
        caller: &Caller,
    ) -> Result<PolicyChange, Error> {
        if !self
            .store
            .list_policies(&tenant.id)
            .await?
            .iter()
            .any(|v| v.version == version)
        {
            return Err(Error::not_found(
                "policy_version_not_found",
                format!("tenant {} has no policy version {version}", tenant.name),
            ));
        }
        let governance = self.active_policy(tenant).await?.policy.governance.clone();
        if governance.needs_approval("policy.rollback") {
            let approval = self
                .request_approval(
                    tenant,
                    "policy.rollback",
                    json!({ "version": version }),
                    format!("make policy version {version} active again"),
                    &governance,
                    caller,
                )
                .await?;
            return Ok(PolicyChange::AwaitingApproval(Box::new(approval)));
        }
        self.reactivate_policy_now(tenant, version, caller, None)
            .await?;
        Ok(PolicyChange::Applied { version })
    }

    pub(crate) async fn reactivate_policy_now(
        &self,
        tenant: &Tenant,
        version: i64,
        caller: &Caller,
        approval: Option<&Approval>,
    ) -> Result<(), Error> {
        let event = caller
            .event("policy.activated", "tenant", tenant.id.as_str())
            .details(json!({
                "version": version,
                "rollback": true,
                "approval": approval.map(|a| a.id.as_str()),
                "requested_by": approval.map(|a| a.requested_by.as_str()),
            }));
        if !self
            .store
            .reactivate_policy(
                &tenant.id,
                version,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?
        {
            return Err(Error::not_found(
                "policy_version_not_found",
                format!("tenant {} has no policy version {version}", tenant.name),
            ));
        }
        Ok(())
    }

    /// Evaluates a candidate policy against the tenant's live users and credentials and counts,
    /// per population, what would change if it were applied. Changes nothing. `progress` hears
    /// how far the loading, then the evaluation, has come.
    pub async fn simulate_policy(
        &self,
        tenant: &Tenant,
        document: &str,
        progress: &(dyn Fn(SimulationProgress) + Sync),
    ) -> Result<policy::SimulationReport, ApplyError> {
        let candidate = lint_policy(document).map_err(ApplyError::Lint)?;
        let current = self.active_policy(tenant).await?.policy;
        let catalogue = self.catalogue().await?;
        let subjects = self
            .store
            .policy_subjects(&tenant.id, &|rows| {
                progress(SimulationProgress::Loading { rows })
            })
            .await
            .map_err(Error::from)?;
        let users: Vec<policy::SimUser> = subjects
            .into_iter()
            .map(|s| policy::SimUser {
                populations: s.populations,
                credentials: s
                    .credentials
                    .into_iter()
                    .map(|c| catalogue.facts_of_parts(c))
                    .collect(),
            })
            .collect();
        let of = users.len() as u64;
        let mut report = policy::simulate(&current, &candidate, &users, &|users| {
            progress(SimulationProgress::Evaluating { users, of })
        });
        // Authenticator models by name where the catalogue knows them ("iCloud Keychain (…)").
        for impact in report.populations.values_mut() {
            impact.authenticators = std::mem::take(&mut impact.authenticators)
                .into_iter()
                .map(|(aaguid, n)| match catalogue.name(&aaguid) {
                    Some(name) => (format!("{} ({aaguid})", name.name), n),
                    None => (aaguid, n),
                })
                .collect();
        }
        Ok(report)
    }

    pub async fn policy_history(&self, tenant: &Tenant) -> Result<Vec<PolicyVersion>, Error> {
        Ok(self.store.list_policies(&tenant.id).await?)
    }

    /// Sets a user's populations (each must be declared by the active policy or be a SCIM
    /// group's), recording
    /// `user.populations_changed`.
    pub async fn set_populations(
        &self,
        tenant: &Tenant,
        user: &User,
        populations: &[String],
        caller: &Caller,
    ) -> Result<(), Error> {
        let active = self.active_policy(tenant).await?;
        for p in populations {
            // A SCIM group is a population too (issue 9), whether or not the policy names it.
            if !active.policy.populations.contains(p) && !self.is_scim_group(tenant, p).await? {
                return Err(Error::invalid(
                    "unknown_population",
                    format!(
                        "{p:?} is not a population of the active policy (declared: {}) nor a SCIM group",
                        active.policy.populations.join(", ")
                    ),
                ));
            }
        }
        let before = self.store.user_populations(&tenant.id, &user.id).await?;
        let event = caller
            .event("user.populations_changed", "user", user.id.as_str())
            .details(json!({ "from": before, "to": populations }));
        self.store
            .set_user_populations(
                &tenant.id,
                &user.id,
                populations,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn subject(&self, tenant: &Tenant, user: &UserId) -> Result<Subject, Error> {
        Ok(Subject {
            populations: self.store.user_populations(&tenant.id, user).await?,
        })
    }
}

/// Lints a policy document completely: the core's checks, then every `trusted_roots`
/// certificate parsed as X.509 (which the pure core cannot do).
pub fn lint_policy(document: &str) -> Result<Policy, Vec<LintError>> {
    let parsed = policy::parse(document)?;
    let mut errors = Vec::new();
    let scopes = std::iter::once(("authenticators".to_string(), &parsed.authenticators.default))
        .chain(
            parsed
                .authenticators
                .by_population
                .iter()
                .map(|(p, r)| (format!("authenticators.{p}"), r)),
        );
    for (path, rules) in scopes {
        for pem in &rules.trusted_roots {
            if let Err(e) = keyplane_webauthn::TrustAnchors::from_pem(std::slice::from_ref(pem)) {
                // The line of the certificate's first body line, for the operator.
                let probe: String = pem
                    .lines()
                    .nth(1)
                    .unwrap_or_default()
                    .chars()
                    .take(32)
                    .collect();
                let line = document
                    .lines()
                    .position(|l| !probe.is_empty() && l.contains(&probe))
                    .map_or(0, |i| i + 1);
                errors.push(LintError {
                    line,
                    column: 1,
                    path: format!("{path}.trusted_roots"),
                    message: e.message,
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}
