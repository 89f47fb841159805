//! `keyplane credential inspect`: what Keyplane sees in a captured WebAuthn response, through
//! the same verification the server runs (`keyplane_webauthn::RelyingParty`) and, for a tenant,
//! the same registration decision (`keyplane_core::policy::registration`). What a capture cannot
//! supply (the issued challenge, the stored key) comes from flags; every check that could not be
//! made is reported as not checked, with why.

mod input;
mod report;

use crate::output::Format;
use anyhow::{anyhow, Context};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use input::Ceremony;
use keyplane_core::policy::{self, Subject};
use keyplane_core::{Credential, CredentialRecordId, Tenant};
use keyplane_server::service::Catalogue;
use keyplane_server::{App, Settings};
use keyplane_webauthn::inspect::{
    attestation_certificates, cose_algorithm_name, AuthDataHeader, ClientDataView,
};
use keyplane_webauthn::{
    offered_algorithm_ids, ParsedAssertion, ParsedRegistration, RelyingParty, RpConfig,
    TrustAnchors, VerifyOptions,
};
use report::{Check, Report, Status};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A file holding the response: PublicKeyCredential.toJSON() output (alone or inside a
    /// request body), a HAR capture, or a log with the JSON in it. `-` reads standard input.
    pub file: String,
    /// The RP ID the response must be scoped to (default: the tenant's).
    #[arg(long)]
    pub rp_id: Option<String>,
    /// An origin the response may come from (repeatable; default: the tenant's).
    #[arg(long = "origin")]
    pub origins: Vec<String>,
    /// The challenge the server issued (base64url); without it the challenge is not checked.
    #[arg(long)]
    pub challenge: Option<String>,
    /// Judge certificate validity at this instant (RFC 3339) instead of now.
    #[arg(long)]
    pub at: Option<String>,
    /// Authentication: the credential's COSE public key (base64url), to check the signature.
    #[arg(long)]
    pub public_key: Option<String>,
    /// Authentication with --public-key: the stored signature counter (default 0).
    #[arg(long, default_value_t = 0)]
    pub sign_count: u32,
    /// Require user verification, as a policy that demands it does.
    #[arg(long)]
    pub require_uv: bool,
    /// Registration: PEM file of trust anchors to judge the attestation chain against
    /// (repeatable; added to the tenant policy's roots).
    #[arg(long = "trust-root")]
    pub trust_roots: Vec<PathBuf>,
    /// Tenant: its RP ID, origins, catalogue, stored credentials and policy decision. Opens the
    /// configured database; without it the command works offline.
    #[arg(long)]
    pub tenant: Option<String>,
    /// With --tenant: the user whose populations and passkey count the policy decision uses.
    #[arg(long, requires = "tenant")]
    pub user: Option<String>,
    /// `table`: the readable report; `json`: the shape documented in docs/support.md.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// What the tenant (with `--tenant`) contributes.
struct TenantContext {
    app: Arc<App>,
    tenant: Tenant,
    catalogue: Arc<Catalogue>,
}

pub async fn run(settings: Settings, args: InspectArgs) -> anyhow::Result<()> {
    let text = input::read(&args.file)?;
    let found = input::find(&text)?;
    let at = match &args.at {
        Some(s) => SystemTime::from(
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("--at {s:?} is not an RFC 3339 time"))?,
        ),
        None => SystemTime::now(),
    };
    let challenge = args
        .challenge
        .as_deref()
        .map(|c| b64(c).ok_or_else(|| anyhow!("--challenge is not base64url")))
        .transpose()?;
    let public_key = args
        .public_key
        .as_deref()
        .map(|k| b64(k).ok_or_else(|| anyhow!("--public-key is not base64url")))
        .transpose()?;
    let mut extra_roots = Vec::new();
    for path in &args.trust_roots {
        extra_roots.push(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read trust root {}", path.display()))?,
        );
    }
    let tenant = match &args.tenant {
        None => None,
        Some(name) => {
            let app = crate::commands::open(settings).await?;
            let tenant = crate::commands::tenant_or_default(&app, Some(name)).await?;
            let catalogue = app
                .catalogue()
                .await
                .map_err(|e| anyhow!("{}", e.message))?;
            Some(TenantContext {
                app,
                tenant,
                catalogue,
            })
        }
    };
    let mut inspection = Inspection {
        args: &args,
        at,
        challenge,
        public_key,
        extra_roots,
        tenant: tenant.as_ref(),
        checks: Vec::new(),
    };
    let report = inspection.run(&found).await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print!("{}", report.text()),
    }
    Ok(())
}

/// base64url or standard base64, padded or not (captures and logs use both).
fn b64(s: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let s = s.trim();
    LENIENT
        .decode(s)
        .ok()
        .or_else(|| STANDARD.decode(s).ok())
        .or_else(|| STANDARD.decode(s.trim_end_matches('=')).ok())
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

struct Inspection<'a> {
    args: &'a InspectArgs,
    at: SystemTime,
    challenge: Option<Vec<u8>>,
    public_key: Option<Vec<u8>>,
    extra_roots: Vec<String>,
    tenant: Option<&'a TenantContext>,
    checks: Vec<Check>,
}

/// The relying-party settings a verification runs with, and whether each came from the operator
/// (checked) or from the response itself (not checked).
struct Effective {
    rp_id: Option<String>,
    origins: Vec<String>,
    challenge: Vec<u8>,
}

impl Inspection<'_> {
    fn check(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }

    async fn run(&mut self, found: &input::Found) -> anyhow::Result<Report> {
        let cred = &found.credential;
        let client_data = cred["response"]["clientDataJSON"]
            .as_str()
            .and_then(b64)
            .and_then(|bytes| ClientDataView::from_json_bytes(&bytes).ok());
        let mut report = Report {
            ceremony: found.ceremony.as_str(),
            source: found.source.clone(),
            credential_id: cred["rawId"]
                .as_str()
                .or(cred["id"].as_str())
                .map(str::to_string),
            client_data: client_data.as_ref().map(|c| report::ClientData {
                type_: c.type_.clone(),
                origin: c.origin.clone(),
                challenge: c.challenge.clone(),
                cross_origin: c.cross_origin,
                top_origin: c.top_origin.clone(),
            }),
            authenticator_data: None,
            aaguid: None,
            authenticator: None,
            algorithm: None,
            attestation: None,
            stored_credential: None,
            at: rfc3339(self.at),
            checks: Vec::new(),
            verdict: report::Verdict {
                status: "undecided",
                code: None,
                message: String::new(),
            },
            policy: None,
        };
        match found.ceremony {
            Ceremony::Registration => self.registration(cred, client_data, &mut report).await?,
            Ceremony::Authentication => self.authentication(cred, client_data, &mut report).await?,
        }
        report.checks = std::mem::take(&mut self.checks);
        Ok(report)
    }

    /// Decides the RP ID, origins and challenge to verify with, reporting for each whether it is
    /// checked against what the operator gave or taken from the response.
    fn effective(&mut self, client_data: &ClientDataView, header: &AuthDataHeader) -> Effective {
        let origin = client_data.origin.clone().unwrap_or_default();
        // Challenge.
        let own_challenge = client_data
            .challenge
            .as_deref()
            .and_then(b64)
            .unwrap_or_default();
        let challenge = match self.challenge.clone() {
            Some(given) if given == own_challenge => {
                self.check(
                    "challenge",
                    Status::Passed,
                    "the response answers --challenge",
                );
                given
            }
            Some(given) => {
                self.check(
                    "challenge",
                    Status::Failed,
                    format!(
                        "the response answers {}, not --challenge",
                        client_data.challenge.as_deref().unwrap_or("-")
                    ),
                );
                given
            }
            None => {
                self.check(
                    "challenge",
                    Status::NotChecked,
                    "no --challenge: verified against the response's own challenge",
                );
                own_challenge
            }
        };
        // Origins.
        let (origins, from) = if !self.args.origins.is_empty() {
            (self.args.origins.clone(), "--origin")
        } else if let Some(t) = self.tenant {
            (t.tenant.origins.clone(), "the tenant's origins")
        } else {
            (Vec::new(), "")
        };
        let origins = if origins.is_empty() {
            self.check(
                "origin",
                Status::NotChecked,
                "no --origin or --tenant: verified against the response's own origin",
            );
            vec![origin.clone()]
        } else {
            if origins.contains(&origin) {
                self.check("origin", Status::Passed, format!("{origin} is in {from}"));
            } else {
                self.check(
                    "origin",
                    Status::Failed,
                    format!("{origin} is not in {from} ({})", origins.join(", ")),
                );
            }
            origins
        };
        // RP ID.
        let given = self.args.rp_id.clone().map(|r| (r, "--rp-id")).or_else(|| {
            self.tenant
                .map(|t| (t.tenant.rp_id.clone(), "the tenant's"))
        });
        let rp_id = match given {
            Some((rp_id, from)) => {
                if header.rp_id_matches(&rp_id) {
                    self.check(
                        "rp_id",
                        Status::Passed,
                        format!("rpIdHash is SHA-256 of {rp_id} ({from})"),
                    );
                } else {
                    self.check(
                        "rp_id",
                        Status::Failed,
                        format!("rpIdHash is not SHA-256 of {rp_id} ({from})"),
                    );
                }
                Some(rp_id)
            }
            None => {
                let guess = url::Url::parse(&origin)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .and_then(|host| {
                        let labels: Vec<&str> = host.split('.').collect();
                        (0..labels.len())
                            .map(|i| labels[i..].join("."))
                            .find(|candidate| header.rp_id_matches(candidate))
                    });
                match &guess {
                    Some(g) => self.check(
                        "rp_id",
                        Status::NotChecked,
                        format!(
                            "no --rp-id or --tenant: rpIdHash matches {g}, the origin's host or \
                             a parent domain, which verification used"
                        ),
                    ),
                    None => self.check(
                        "rp_id",
                        Status::NotChecked,
                        "no --rp-id or --tenant, and rpIdHash matches neither the origin's host \
                         nor a parent domain: give --rp-id",
                    ),
                }
                guess
            }
        };
        Effective {
            rp_id,
            origins,
            challenge,
        }
    }

    fn relying_party(&self, eff: &Effective) -> Result<RelyingParty, keyplane_core::Error> {
        RelyingParty::new(&RpConfig {
            rp_id: eff.rp_id.clone().unwrap_or_default(),
            rp_name: "keyplane credential inspect".into(),
            origins: eff.origins.clone(),
            timeout: Duration::from_secs(300),
        })
    }

    async fn registration(
        &mut self,
        cred: &Value,
        client_data: Option<ClientDataView>,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let parsed = match ParsedRegistration::from_json(cred) {
            Ok(p) => p,
            Err(e) => {
                self.check("decode", Status::Failed, e.message.clone());
                report.verdict = rejected(&e);
                return Ok(());
            }
        };
        self.check(
            "decode",
            Status::Passed,
            "the response, its attestation object and its credential key decode",
        );
        let facts = parsed.facts().clone();
        let header = AuthDataHeader::from_attestation_object(parsed.attestation_object())
            .map_err(|e| anyhow!("{}", e.message))?;
        report.authenticator_data = Some(auth_data(&header));
        let aaguid = facts.aaguid_string();
        report.authenticator = self.name(&aaguid);
        report.aaguid = Some(aaguid.clone());
        report.credential_id = Some(URL_SAFE_NO_PAD.encode(&facts.credential_id));
        report.algorithm = facts.cose_alg.map(|a| report::Algorithm {
            cose: a,
            name: cose_algorithm_name(a),
        });
        let certificates = match attestation_certificates(parsed.attestation_object()) {
            Ok(certs) => certs
                .iter()
                .map(|c| report::Certificate {
                    subject: c.subject.clone(),
                    issuer: c.issuer.clone(),
                    serial: c.serial.clone(),
                    not_before: rfc3339(c.not_before),
                    not_after: rfc3339(c.not_after),
                    valid_at: c.valid_at(self.at),
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut attestation = report::Attestation {
            format: facts.fmt.clone(),
            attestation_type: None,
            trusted: None,
            certificates,
        };
        let client_data = client_data.unwrap_or(ClientDataView {
            type_: None,
            origin: None,
            challenge: None,
            cross_origin: None,
            top_origin: None,
        });
        let eff = self.effective(&client_data, &header);
        // The roots the server would judge the chain against: the tenant policy's for this user's
        // populations (and the model's MDS roots), plus any given here.
        let subject = self.subject().await?;
        let mut trust = match self.tenant {
            Some(t) => {
                let active = t
                    .app
                    .active_policy(&t.tenant)
                    .await
                    .map_err(|e| anyhow!("{}", e.message))?;
                let (rules, _) = active
                    .policy
                    .authenticators
                    .for_populations("authenticators", &subject.populations);
                Some(
                    t.catalogue
                        .trust_anchors(rules, &aaguid)
                        .map_err(|e| anyhow!("{}", e.message))?,
                )
            }
            None => None,
        };
        if !self.extra_roots.is_empty() {
            let given =
                TrustAnchors::from_pem(&self.extra_roots).map_err(|e| anyhow!("{}", e.message))?;
            trust
                .get_or_insert_with(TrustAnchors::default)
                .roots_der
                .extend(given.roots_der);
        }
        let judged_trust = trust.is_some();
        let Some(rp_id) = eff.rp_id.clone() else {
            report.verdict = undecided("the RP ID is unknown: give --rp-id or --tenant");
            report.attestation = Some(attestation);
            return Ok(());
        };
        let rp = match self.relying_party(&eff) {
            Ok(rp) => rp,
            Err(e) => {
                report.verdict = undecided(&format!("cannot verify: {}", e.message));
                report.attestation = Some(attestation);
                return Ok(());
            }
        };
        let state = RelyingParty::registration_state_for(
            &eff.challenge,
            &offered_algorithm_ids(),
            self.args.require_uv,
        )
        .map_err(|e| anyhow!("{}", e.message))?;
        let options = VerifyOptions { trust, at: self.at };
        match rp.finish_parsed_registration(&state, &parsed, &options) {
            Ok(registered) => {
                attestation.attestation_type = Some(registered.attestation_type.to_string());
                attestation.trusted = registered.attestation_trusted;
                match registered.attestation_type {
                    "unverifiable" => self.check(
                        "attestation_statement",
                        Status::NotChecked,
                        format!(
                            "webauthn-rs-core cannot verify this {} statement; the server \
                             registers the passkey as unattested",
                            facts.fmt
                        ),
                    ),
                    "none" => self.check(
                        "attestation_statement",
                        Status::NotChecked,
                        "attestation format none: there is no statement",
                    ),
                    other => self.check(
                        "attestation_statement",
                        Status::Passed,
                        format!("the statement verifies (attestation type {other})"),
                    ),
                }
                match registered.attestation_trusted {
                    Some(true) => self.check(
                        "attestation_trust",
                        Status::Passed,
                        format!("the chain reaches a trust anchor at {}", rfc3339(self.at)),
                    ),
                    Some(false) => self.check(
                        "attestation_trust",
                        Status::Failed,
                        format!(
                            "the chain does not reach a trust anchor at {} (or the statement \
                             could not be verified)",
                            rfc3339(self.at)
                        ),
                    ),
                    None => self.check(
                        "attestation_trust",
                        Status::NotChecked,
                        if judged_trust {
                            "not judged"
                        } else {
                            "no trust anchors: give --tenant or --trust-root"
                        },
                    ),
                }
                report.verdict = report::Verdict {
                    status: "accepted",
                    code: None,
                    message: format!(
                        "the registration verifies for RP ID {rp_id} (webauthn-rs-core, as the \
                         server runs it)"
                    ),
                };
                report.policy = self.policy_decision(&subject, &facts, &registered).await?;
            }
            Err(e) => {
                let reached = !matches!(
                    e.code,
                    "challenge_mismatch"
                        | "origin_mismatch"
                        | "rp_id_mismatch"
                        | "client_data_type_mismatch"
                        | "cross_origin_not_allowed"
                        | "user_not_present"
                        | "user_not_verified"
                        | "algorithm_not_allowed"
                        | "credential_flags_invalid"
                );
                if reached {
                    self.check("attestation_statement", Status::Failed, e.message.clone());
                } else {
                    self.check(
                        "attestation_statement",
                        Status::NotChecked,
                        format!("verification stopped earlier ({})", e.code),
                    );
                }
                report.verdict = rejected(&e);
            }
        }
        report.attestation = Some(attestation);
        Ok(())
    }

    async fn authentication(
        &mut self,
        cred: &Value,
        client_data: Option<ClientDataView>,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let parsed = match ParsedAssertion::from_json(cred) {
            Ok(p) => p,
            Err(e) => {
                self.check("decode", Status::Failed, e.message.clone());
                report.verdict = rejected(&e);
                return Ok(());
            }
        };
        self.check(
            "decode",
            Status::Passed,
            "the response and its authenticator data decode",
        );
        report.credential_id = Some(URL_SAFE_NO_PAD.encode(parsed.credential_id()));
        let header = AuthDataHeader::from_auth_data(parsed.authenticator_data())
            .map_err(|e| anyhow!("{}", e.message))?;
        report.authenticator_data = Some(auth_data(&header));
        let client_data = client_data.unwrap_or(ClientDataView {
            type_: None,
            origin: None,
            challenge: None,
            cross_origin: None,
            top_origin: None,
        });
        let eff = self.effective(&client_data, &header);
        // The key: given, or the tenant's stored credential with this id.
        let stored: Option<Credential> = match self.tenant {
            Some(t) => t
                .app
                .store
                .credential_by_credential_id(&t.tenant.id, parsed.credential_id())
                .await
                .map_err(|e| anyhow!("cannot read the stored credential: {e}"))?,
            None => None,
        };
        if let Some(c) = &stored {
            report.aaguid = Some(c.aaguid.clone());
            report.authenticator = self.name(&c.aaguid);
            report.stored_credential = Some(report::StoredCredential {
                id: c.id.as_str().to_string(),
                user_id: c.user_id.as_str().to_string(),
                status: c.status.as_str().to_string(),
                sign_count: c.sign_count,
            });
        }
        let key = match (&self.public_key, &stored) {
            (Some(key), _) => {
                match RelyingParty::library_state_from_cose(
                    parsed.credential_id(),
                    key,
                    self.args.sign_count,
                    false,
                ) {
                    Ok(state) => Some((state, self.args.sign_count, "--public-key")),
                    Err(e) => {
                        self.check("signature", Status::NotChecked, e.message.clone());
                        report.verdict = rejected(&e);
                        return Ok(());
                    }
                }
            }
            (None, Some(c)) => Some((
                c.library_state.clone(),
                c.sign_count,
                "the tenant's stored passkey",
            )),
            (None, None) => None,
        };
        let Some((library_state, sign_count, key_from)) = key else {
            let why = if self.tenant.is_some() {
                "the tenant has no passkey with this credential id, and no --public-key was given"
            } else {
                "no --public-key, and no --tenant to find the stored passkey by credential id"
            };
            self.check("signature", Status::NotChecked, why);
            report.verdict = undecided(&format!("the signature cannot be checked: {why}"));
            return Ok(());
        };
        let Some(rp_id) = eff.rp_id.clone() else {
            self.check("signature", Status::NotChecked, "the RP ID is unknown");
            report.verdict = undecided("the RP ID is unknown: give --rp-id or --tenant");
            return Ok(());
        };
        let rp = match self.relying_party(&eff) {
            Ok(rp) => rp,
            Err(e) => {
                self.check("signature", Status::NotChecked, e.message.clone());
                report.verdict = undecided(&format!("cannot verify: {}", e.message));
                return Ok(());
            }
        };
        let state = RelyingParty::authentication_state_for(&eff.challenge, self.args.require_uv)
            .map_err(|e| anyhow!("{}", e.message))?;
        match rp.finish_authentication(&state, &parsed, &library_state, sign_count) {
            Ok(outcome) => {
                self.check(
                    "signature",
                    Status::Passed,
                    format!("verifies with the key from {key_from}"),
                );
                self.check(
                    "sign_count",
                    Status::Passed,
                    format!(
                        "{} after the stored {sign_count} (0 = the authenticator does not count)",
                        outcome.sign_count
                    ),
                );
                report.verdict = report::Verdict {
                    status: "accepted",
                    code: None,
                    message: format!(
                        "the assertion verifies for RP ID {rp_id} (webauthn-rs-core, as the \
                         server runs it)"
                    ),
                };
                // The server refuses a passkey that is not active before it verifies anything
                // (service/signin.rs), with this code.
                if let Some(c) = stored.as_ref().filter(|_| self.public_key.is_none()) {
                    if c.status == keyplane_core::CredentialStatus::Active {
                        self.check(
                            "credential_status",
                            Status::Passed,
                            "the stored passkey is active",
                        );
                    } else {
                        let why = format!("the stored passkey is {}", c.status.as_str());
                        self.check("credential_status", Status::Failed, why.clone());
                        report.verdict = report::Verdict {
                            status: "rejected",
                            code: Some("credential_inactive".into()),
                            message: format!(
                                "the signature verifies, but {why}: the server refuses it"
                            ),
                        };
                    }
                }
            }
            Err(e) => {
                match e.code {
                    "signature_invalid" => self.check(
                        "signature",
                        Status::Failed,
                        format!("does not verify with the key from {key_from}"),
                    ),
                    "sign_count_regression" => {
                        self.check(
                            "signature",
                            Status::Passed,
                            format!("verifies with the key from {key_from}"),
                        );
                        self.check(
                            "sign_count",
                            Status::Failed,
                            format!(
                                "{} is not above the stored {sign_count}: a possible clone",
                                header.sign_count
                            ),
                        );
                    }
                    other => self.check(
                        "signature",
                        Status::NotChecked,
                        format!("verification stopped earlier ({other})"),
                    ),
                }
                report.verdict = rejected(&e);
            }
        }
        Ok(())
    }

    fn name(&self, aaguid: &str) -> Option<report::Authenticator> {
        self.tenant
            .and_then(|t| t.catalogue.name(aaguid))
            .map(|n| report::Authenticator {
                name: n.name,
                source: n.source,
            })
    }

    /// The populations of `--user` (none without it).
    async fn subject(&self) -> anyhow::Result<Subject> {
        match (self.tenant, &self.args.user) {
            (Some(t), Some(name)) => {
                let user = crate::commands::find_user(&t.app, &t.tenant, name).await?;
                Ok(Subject {
                    populations: t.app.store.user_populations(&t.tenant.id, &user.id).await?,
                })
            }
            _ => Ok(Subject::default()),
        }
    }

    /// The tenant policy's registration decision, as the server's registration path makes it.
    async fn policy_decision(
        &self,
        subject: &Subject,
        facts: &keyplane_webauthn::RegistrationFacts,
        registered: &keyplane_webauthn::RegisteredCredential,
    ) -> anyhow::Result<Option<report::PolicyDecision>> {
        let Some(t) = self.tenant else {
            return Ok(None);
        };
        let active = t
            .app
            .active_policy(&t.tenant)
            .await
            .map_err(|e| anyhow!("{}", e.message))?;
        let mut assumptions = vec![
            "the ceremony began from an invitation or a signed-in session".to_string(),
            "exceptions granted to the user are not applied".to_string(),
        ];
        let active_passkeys = match &self.args.user {
            Some(name) => {
                let user = crate::commands::find_user(&t.app, &t.tenant, name).await?;
                t.app
                    .store
                    .list_credentials(&t.tenant.id, Some(&user.id))
                    .await?
                    .iter()
                    .filter(|c| c.status == keyplane_core::CredentialStatus::Active)
                    .count() as u32
            }
            None => {
                assumptions
                    .push("no --user: a user in no population, with no passkey yet".to_string());
                0
            }
        };
        let authenticator = t.catalogue.facts_of_parts(keyplane_store::CredentialFacts {
            id: CredentialRecordId::generate(),
            aaguid: facts.aaguid_string(),
            attestation_format: facts.fmt.clone(),
            attestation_type: registered.attestation_type.to_string(),
            attestation_trusted: registered.attestation_trusted == Some(true),
            backup_eligible: facts.backup_eligible,
            user_verified: facts.user_verified,
        });
        let decision = policy::registration(
            &active.policy,
            subject,
            &authenticator,
            true,
            active_passkeys,
        );
        Ok(Some(report::PolicyDecision {
            tenant: t.tenant.name.clone(),
            policy_version: active.version,
            verdict: match decision.verdict {
                policy::Verdict::Allow => "allow",
                _ => "deny",
            },
            reasons: decision
                .reasons
                .iter()
                .map(|r| report::Reason {
                    rule: r.rule.clone(),
                    code: r.code.to_string(),
                    message: r.message.clone(),
                })
                .collect(),
            assumptions,
        }))
    }
}

fn auth_data(h: &AuthDataHeader) -> report::AuthenticatorData {
    report::AuthenticatorData {
        rp_id_hash: hex::encode(h.rp_id_hash),
        flags: report::Flags {
            up: h.flag(AuthDataHeader::UP),
            uv: h.flag(AuthDataHeader::UV),
            be: h.flag(AuthDataHeader::BE),
            bs: h.flag(AuthDataHeader::BS),
            at: h.flag(AuthDataHeader::AT),
            ed: h.flag(AuthDataHeader::ED),
        },
        sign_count: h.sign_count,
    }
}

fn rejected(e: &keyplane_core::Error) -> report::Verdict {
    report::Verdict {
        status: "rejected",
        code: Some(e.code.to_string()),
        message: e.message.clone(),
    }
}

fn undecided(why: &str) -> report::Verdict {
    report::Verdict {
        status: "undecided",
        code: None,
        message: why.to_string(),
    }
}
