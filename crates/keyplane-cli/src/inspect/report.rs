//! The inspection report: its JSON shape (documented field by field in docs/support.md, so it is
//! an API) and the readable rendering of the same data.

use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Serialize)]
pub struct Report {
    /// `registration` or `authentication`.
    #[serde(rename = "type")]
    pub ceremony: &'static str,
    /// Where the response was found: `json`, `log` or `har: METHOD URL`.
    pub source: String,
    pub credential_id: Option<String>,
    pub client_data: Option<ClientData>,
    pub authenticator_data: Option<AuthenticatorData>,
    pub aaguid: Option<String>,
    pub authenticator: Option<Authenticator>,
    pub algorithm: Option<Algorithm>,
    pub attestation: Option<Attestation>,
    /// The stored credential the assertion was checked against (`--tenant`).
    pub stored_credential: Option<StoredCredential>,
    /// The instant certificates are judged at (RFC 3339).
    pub at: String,
    pub checks: Vec<Check>,
    pub verdict: Verdict,
    pub policy: Option<PolicyDecision>,
}

#[derive(Debug, Serialize)]
pub struct ClientData {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub origin: Option<String>,
    pub challenge: Option<String>,
    pub cross_origin: Option<bool>,
    pub top_origin: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AuthenticatorData {
    /// Hex.
    pub rp_id_hash: String,
    pub flags: Flags,
    pub sign_count: u32,
}

#[derive(Debug, Serialize)]
pub struct Flags {
    pub up: bool,
    pub uv: bool,
    pub be: bool,
    pub bs: bool,
    pub at: bool,
    pub ed: bool,
}

#[derive(Debug, Serialize)]
pub struct Authenticator {
    pub name: String,
    /// `mds` or the unsigned list the name came from.
    pub source: String,
}

#[derive(Debug, Serialize)]
pub struct Algorithm {
    pub cose: i64,
    pub name: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct Attestation {
    pub format: String,
    /// As the server records it (`basic`, `self`, `attca`, `anonca`, `none`, `unverifiable`,
    /// `uncertain`); `null` when verification did not get that far.
    pub attestation_type: Option<String>,
    /// Whether the chain reached a trust anchor; `null` when not judged.
    pub trusted: Option<bool>,
    pub certificates: Vec<Certificate>,
}

#[derive(Debug, Serialize)]
pub struct Certificate {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    /// Within its validity period at `at`.
    pub valid_at: bool,
}

#[derive(Debug, Serialize)]
pub struct StoredCredential {
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub sign_count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    NotChecked,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "FAILED",
            Status::NotChecked => "not checked",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    /// `accepted`, `rejected` or `undecided` (verification could not be run).
    pub status: &'static str,
    /// The error code the server would answer with, when rejected.
    pub code: Option<String>,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct PolicyDecision {
    pub tenant: String,
    pub policy_version: Option<i64>,
    /// `allow` or `deny`.
    pub verdict: &'static str,
    pub reasons: Vec<Reason>,
    /// What the decision took for granted that a capture cannot tell.
    pub assumptions: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Reason {
    pub rule: String,
    pub code: String,
    pub message: String,
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl Report {
    /// The readable report.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = self.write_text(&mut o);
        o
    }

    fn write_text(&self, o: &mut String) -> std::fmt::Result {
        let verdict = match &self.verdict.code {
            Some(code) => format!("{} ({code})", self.verdict.status.to_uppercase()),
            None => self.verdict.status.to_uppercase(),
        };
        writeln!(o, "Verdict:         {verdict}: {}", self.verdict.message)?;
        writeln!(
            o,
            "Ceremony:        {} (from {})",
            self.ceremony, self.source
        )?;
        writeln!(o, "Credential id:   {}", opt(&self.credential_id))?;
        if let Some(c) = &self.client_data {
            writeln!(o, "Client data:")?;
            writeln!(o, "  type           {}", opt(&c.type_))?;
            writeln!(o, "  origin         {}", opt(&c.origin))?;
            writeln!(o, "  challenge      {}", opt(&c.challenge))?;
            let cross = c.cross_origin.map(yes).unwrap_or("-");
            writeln!(o, "  crossOrigin    {cross}")?;
            if c.top_origin.is_some() {
                writeln!(o, "  topOrigin      {}", opt(&c.top_origin))?;
            }
        }
        if let Some(a) = &self.authenticator_data {
            let f = &a.flags;
            writeln!(o, "Authenticator data:")?;
            writeln!(o, "  rpIdHash       {}", a.rp_id_hash)?;
            writeln!(
                o,
                "  flags          UP={} UV={} BE={} BS={} AT={} ED={}",
                yes(f.up),
                yes(f.uv),
                yes(f.be),
                yes(f.bs),
                yes(f.at),
                yes(f.ed)
            )?;
            writeln!(o, "  sign count     {}", a.sign_count)?;
        }
        if let Some(aaguid) = &self.aaguid {
            let name = match &self.authenticator {
                Some(a) => format!("{} ({})", a.name, a.source),
                None => "unknown (not in the catalogue; without --tenant none is read)".into(),
            };
            writeln!(o, "AAGUID:          {aaguid}")?;
            writeln!(o, "Authenticator:   {name}")?;
        }
        if let Some(alg) = &self.algorithm {
            writeln!(
                o,
                "Algorithm:       {} (COSE {})",
                alg.name.unwrap_or("unknown"),
                alg.cose
            )?;
        }
        if let Some(s) = &self.stored_credential {
            writeln!(
                o,
                "Stored passkey:  {} (user {}, {}, sign count {})",
                s.id, s.user_id, s.status, s.sign_count
            )?;
        }
        if let Some(a) = &self.attestation {
            let trusted = match a.trusted {
                Some(t) => yes(t),
                None => "not judged",
            };
            writeln!(o, "Attestation:")?;
            writeln!(o, "  format         {}", a.format)?;
            writeln!(o, "  type           {}", opt(&a.attestation_type))?;
            writeln!(o, "  trusted        {trusted}")?;
            for (i, c) in a.certificates.iter().enumerate() {
                writeln!(o, "  certificate {i}  subject  {}", c.subject)?;
                writeln!(o, "                 issuer   {}", c.issuer)?;
                writeln!(o, "                 serial   {}", c.serial)?;
                writeln!(
                    o,
                    "                 valid    {} .. {} ({} at {})",
                    c.not_before,
                    c.not_after,
                    if c.valid_at { "valid" } else { "NOT valid" },
                    self.at
                )?;
            }
        }
        writeln!(o, "Checks:")?;
        for c in &self.checks {
            writeln!(o, "  {:<22} {:<12} {}", c.name, c.status.label(), c.detail)?;
        }
        if let Some(p) = &self.policy {
            let version = p
                .policy_version
                .map(|v| format!("version {v}"))
                .unwrap_or_else(|| "built-in default".into());
            writeln!(
                o,
                "Policy:          {} (tenant {}, {version})",
                p.verdict.to_uppercase(),
                p.tenant
            )?;
            for r in &p.reasons {
                writeln!(o, "  {} ({}): {}", r.rule, r.code, r.message)?;
            }
            for a in &p.assumptions {
                writeln!(o, "  assumed: {a}")?;
            }
        }
        Ok(())
    }
}
