//! The tenant's policy: reading the active version (or the built-in one), activating a new
//! version (linted first, audited, versioned), rolling back, and setting users' populations.

use super::App;
use keyplane_core::audit::Caller;
use keyplane_core::policy::{self, AuthenticatorFacts, LintError, Policy, Subject};
use keyplane_core::*;
use keyplane_store::{AuditBatch, PolicyVersion};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

    /// Lints `document` and, if it is clean, stores it as the next version and activates it,
    /// recording `policy.activated`.
    pub async fn apply_policy(
        &self,
        tenant: &Tenant,
        document: &str,
        caller: &Caller,
    ) -> Result<i64, ApplyError> {
        let parsed = policy::parse(document).map_err(ApplyError::Lint)?;
        let digest = hex::encode(Sha256::digest(document.as_bytes()));
        let event = caller
            .event("policy.activated", "tenant", tenant.id.as_str())
            .details(json!({
                "sha256": digest,
                "populations": parsed.populations,
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

    /// Makes an earlier version active again, recording `policy.activated` with `rollback`.
    pub async fn rollback_policy(
        &self,
        tenant: &Tenant,
        version: i64,
        caller: &Caller,
    ) -> Result<(), Error> {
        let event = caller
            .event("policy.activated", "tenant", tenant.id.as_str())
            .details(json!({ "version": version, "rollback": true }));
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
        let candidate = policy::parse(document).map_err(ApplyError::Lint)?;
        let current = self.active_policy(tenant).await?.policy;
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
                    .map(|c| {
                        let verified = attestation_verified(&c.attestation_type);
                        authenticator_facts(
                            c.aaguid,
                            c.attestation_format,
                            verified,
                            c.backup_eligible,
                            c.user_verified,
                        )
                    })
                    .collect(),
            })
            .collect();
        let of = users.len() as u64;
        Ok(policy::simulate(&current, &candidate, &users, &|users| {
            progress(SimulationProgress::Evaluating { users, of })
        }))
    }

    pub async fn policy_history(&self, tenant: &Tenant) -> Result<Vec<PolicyVersion>, Error> {
        Ok(self.store.list_policies(&tenant.id).await?)
    }

    /// Sets a user's populations (each must be declared by the active policy), recording
    /// `user.populations_changed`.
    pub async fn set_populations(
        &self,
        tenant: &Tenant,
        user: &User,
        populations: &[String],
        caller: &Caller,
    ) -> Result<(), Error> {
        let active = self.active_policy(tenant).await?;
        if let Some(unknown) = populations
            .iter()
            .find(|p| !active.policy.populations.contains(p))
        {
            return Err(Error::invalid(
                "unknown_population",
                format!(
                    "{unknown:?} is not a population of the active policy (declared: {})",
                    active.policy.populations.join(", ")
                ),
            ));
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

/// What the policy knows about a stored credential (and this assertion's UV flag).
pub(crate) fn facts_of(c: &Credential, user_verified: bool) -> AuthenticatorFacts {
    authenticator_facts(
        c.aaguid.clone(),
        c.attestation_format.clone(),
        attestation_verified(&c.attestation_type),
        c.backup_eligible,
        user_verified,
    )
}

/// Whether the WebAuthn library verified the attestation statement of this type.
fn attestation_verified(attestation_type: &str) -> bool {
    !matches!(attestation_type, "none" | "unverifiable" | "uncertain")
}

fn authenticator_facts(
    aaguid: String,
    attestation_format: String,
    attestation_verified: bool,
    backup_eligible: bool,
    user_verified: bool,
) -> AuthenticatorFacts {
    AuthenticatorFacts {
        aaguid,
        attestation_format,
        attestation_verified,
        // Trust anchors (FIDO MDS, configured roots) come with the rest of issue 5; until then
        // no attestation is trusted, so nothing reaches aal3 or passes `attestation = "trusted"`.
        attestation_trusted: false,
        backup_eligible,
        user_verified,
    }
}
