//! Evaluating the policy: pure functions from (policy, user, authenticator facts, request) to a
//! decision that names every rule behind it. No I/O, no clock of its own.

use super::document::*;
use crate::assurance::Aal;
use crate::mds::CertificationLevel;
use crate::time::Timestamp;

/// What the policy decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    /// The action needs this level, reached recently enough.
    StepUpRequired(Aal),
    /// The credential no longer complies: the user may sign in only to register a compliant one.
    ReEnrolmentRequired,
}

/// One rule's part in a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// Dotted rule path (`authenticators.regulated.synced`, `step_up.admin`).
    pub rule: String,
    /// Stable code (`synced_passkey_not_allowed`, ...), returned to clients and audited.
    pub code: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Every rule that failed (for a refusal), or the rules that granted it.
    pub reasons: Vec<Reason>,
}

/// The user a decision is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub populations: Vec<String>,
}

/// What is known about an authenticator (at registration, or stored with the credential).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthenticatorFacts {
    /// Lowercase hyphenated.
    pub aaguid: String,
    pub attestation_format: String,
    /// The attestation statement was verified (not `none`, not unverifiable).
    pub attestation_verified: bool,
    /// ... and chains to a trusted root.
    pub attestation_trusted: bool,
    pub backup_eligible: bool,
    pub user_verified: bool,
    /// The model's MDS description, when the FIDO MDS lists its AAGUID.
    pub model: Option<String>,
    /// Every status the model's MDS status reports carry.
    pub mds_statuses: Vec<String>,
    /// The highest FIDO certification level MDS grants the model.
    pub certification: Option<CertificationLevel>,
}

impl AuthenticatorFacts {
    /// Device-bound for policy purposes: not backup-eligible *and* shown so by a trusted
    /// attestation. The flags alone are self-reported, and some managers sync without setting them.
    pub fn device_bound(&self) -> bool {
        !self.backup_eligible && self.attestation_trusted
    }
}

fn reason(rule: impl Into<String>, code: &'static str, message: impl Into<String>) -> Reason {
    Reason {
        rule: rule.into(),
        code,
        message: message.into(),
    }
}

/// The authenticator rules a credential breaks, for a user in `subject`'s populations.
pub fn authenticator_violations(
    policy: &Policy,
    subject: &Subject,
    facts: &AuthenticatorFacts,
) -> Vec<Reason> {
    let (rules, path) = policy
        .authenticators
        .for_populations("authenticators", &subject.populations);
    let mut out = Vec::new();
    if rules.deny_aaguids.contains(&facts.aaguid) {
        out.push(reason(
            format!("{path}.deny_aaguids"),
            "authenticator_denied",
            format!("authenticator model {} is on the deny list", facts.aaguid),
        ));
    }
    if let Some(pattern) = facts
        .model
        .as_deref()
        .and_then(|m| rules.deny_models.iter().find(|p| model_matches(p, m)))
    {
        out.push(reason(
            format!("{path}.deny_models"),
            "authenticator_denied",
            format!(
                "authenticator model {:?} matches the deny list ({pattern:?})",
                facts.model.as_deref().unwrap_or_default()
            ),
        ));
    }
    let listed = rules.allow_aaguids.contains(&facts.aaguid)
        || facts
            .model
            .as_deref()
            .is_some_and(|m| rules.allow_models.iter().any(|p| model_matches(p, m)));
    if (!rules.allow_aaguids.is_empty() || !rules.allow_models.is_empty()) && !listed {
        let lists: Vec<&str> = [
            (!rules.allow_aaguids.is_empty()).then_some("allow_aaguids"),
            (!rules.allow_models.is_empty()).then_some("allow_models"),
        ]
        .into_iter()
        .flatten()
        .collect();
        out.push(reason(
            format!("{path}.{}", lists.join("+")),
            "authenticator_not_allowed",
            format!(
                "authenticator model {} is not on the allow list",
                facts.model.as_deref().unwrap_or(&facts.aaguid)
            ),
        ));
    }
    let denied: Vec<&str> = facts
        .mds_statuses
        .iter()
        .filter(|s| rules.deny_statuses.contains(s))
        .map(String::as_str)
        .collect();
    if !denied.is_empty() {
        out.push(reason(
            format!("{path}.deny_statuses"),
            "authenticator_status_denied",
            format!(
                "the FIDO Metadata Service reports {} for {}",
                denied.join(", "),
                facts.model.as_deref().unwrap_or(&facts.aaguid)
            ),
        ));
    }
    if let Some(min) = rules.min_certification {
        // An unattested AAGUID is only a claim: certification counts with a trusted attestation.
        let level = facts.certification.filter(|_| facts.attestation_trusted);
        if level.is_none_or(|l| l < min) {
            out.push(reason(
                format!("{path}.min_certification"),
                "certification_insufficient",
                format!(
                    "FIDO certification {} or higher is required; this authenticator has {}",
                    min.as_str(),
                    match (facts.certification, facts.attestation_trusted) {
                        (Some(l), true) => l.as_str().to_string(),
                        (Some(l), false) =>
                            format!("{} claimed, but its attestation is not trusted", l.as_str()),
                        (None, _) => "none".to_string(),
                    }
                ),
            ));
        }
    }
    if !rules.formats.is_empty() && !rules.formats.contains(&facts.attestation_format) {
        out.push(reason(
            format!("{path}.formats"),
            "attestation_format_not_allowed",
            format!(
                "attestation format {:?} is not accepted",
                facts.attestation_format
            ),
        ));
    }
    match rules.attestation {
        AttestationRequirement::Verified if !facts.attestation_verified => out.push(reason(
            format!("{path}.attestation"),
            "attestation_required",
            "a verified attestation is required",
        )),
        AttestationRequirement::Trusted if !facts.attestation_trusted => out.push(reason(
            format!("{path}.attestation"),
            "attestation_untrusted",
            "an attestation from a trusted root is required",
        )),
        _ => {}
    }
    if !rules.synced_allowed && !facts.device_bound() {
        out.push(reason(
            format!("{path}.synced"),
            "synced_passkey_not_allowed",
            "only device-bound passkeys are allowed (not backup-eligible, shown by a trusted attestation)",
        ));
    }
    if rules.user_verification_required && !facts.user_verified {
        out.push(reason(
            format!("{path}.user_verification"),
            "user_verification_required",
            "the authenticator must verify the user",
        ));
    }
    out
}

/// May this user register this authenticator? `invited`: the ceremony began from an invitation
/// or a signed-in session; `active_passkeys`: how many the user already has.
pub fn registration(
    policy: &Policy,
    subject: &Subject,
    facts: &AuthenticatorFacts,
    invited: bool,
    active_passkeys: u32,
) -> Decision {
    let e = &policy.enrolment;
    let mut refusals = Vec::new();
    if !e.populations.is_empty()
        && !subject
            .populations
            .iter()
            .any(|p| e.populations.contains(p))
    {
        refusals.push(reason(
            "enrolment.populations",
            "enrolment_not_allowed",
            format!("registration is open to {} only", e.populations.join(", ")),
        ));
    }
    if e.invite_required && !invited {
        refusals.push(reason(
            "enrolment.invite_required",
            "invitation_required",
            "registration needs an invitation",
        ));
    }
    if active_passkeys >= e.max_passkeys {
        refusals.push(reason(
            "enrolment.max_passkeys",
            "too_many_passkeys",
            format!("at most {} passkeys per user", e.max_passkeys),
        ));
    }
    refusals.extend(authenticator_violations(policy, subject, facts));
    if refusals.is_empty() {
        let (_, path) = policy
            .authenticators
            .for_populations("authenticators", &subject.populations);
        Decision {
            verdict: Verdict::Allow,
            reasons: vec![reason(
                path,
                "compliant",
                "the authenticator meets every rule",
            )],
        }
    } else {
        Decision {
            verdict: Verdict::Deny,
            reasons: refusals,
        }
    }
}

fn meets(r: Requirement, facts: &AuthenticatorFacts) -> bool {
    match r {
        Requirement::UserVerified => facts.user_verified,
        Requirement::DeviceBound => facts.device_bound(),
        Requirement::TrustedAttestation => facts.attestation_trusted,
    }
}

/// The level a sign-in reaches, as [`assurance`] decides it but without the explanation (for
/// counting over many credentials, as `simulate` does).
pub fn level(policy: &Policy, facts: &AuthenticatorFacts) -> Aal {
    if policy.assurance.aal3.iter().all(|r| meets(*r, facts)) {
        Aal::Aal3
    } else if policy.assurance.aal2.iter().all(|r| meets(*r, facts)) {
        Aal::Aal2
    } else {
        Aal::Aal1
    }
}

/// The level a sign-in reaches (`facts.user_verified` is this assertion's UV flag), and why.
pub fn assurance(policy: &Policy, facts: &AuthenticatorFacts) -> (Aal, Reason) {
    let explain = |level: &str, reqs: &[Requirement]| {
        let names: Vec<&str> = reqs.iter().map(|r| r.as_str()).collect();
        format!(
            "{level}: {}",
            if names.is_empty() {
                "no requirements".into()
            } else {
                names.join(" + ")
            }
        )
    };
    match level(policy, facts) {
        Aal::Aal3 => {
            return (
                Aal::Aal3,
                reason(
                    "assurance.aal3",
                    "aal3",
                    explain("aal3", &policy.assurance.aal3),
                ),
            )
        }
        Aal::Aal2 => {
            return (
                Aal::Aal2,
                reason(
                    "assurance.aal2",
                    "aal2",
                    explain("aal2", &policy.assurance.aal2),
                ),
            )
        }
        Aal::Aal1 => {}
    }
    let missing: Vec<&str> = policy
        .assurance
        .aal2
        .iter()
        .filter(|r| !meets(**r, facts))
        .map(|r| r.as_str())
        .collect();
    (
        Aal::Aal1,
        reason(
            "assurance.aal2",
            "aal1",
            format!("aal1: aal2 needs {}", missing.join(" + ")),
        ),
    )
}

/// A sign-in with a credential: allowed, or (when the credential no longer complies with the
/// authenticator rules, e.g. after a policy change) only to re-enrol.
pub fn sign_in(policy: &Policy, subject: &Subject, facts: &AuthenticatorFacts) -> Decision {
    let violations = authenticator_violations(policy, subject, facts);
    if violations.is_empty() {
        let (_, why) = assurance(policy, facts);
        Decision {
            verdict: Verdict::Allow,
            reasons: vec![why],
        }
    } else {
        Decision {
            verdict: Verdict::ReEnrolmentRequired,
            reasons: violations,
        }
    }
}

/// Applies exceptions to a refusal: reasons whose rule an exception waives are dropped; if none
/// remain, the decision becomes `Allow`. `waivers` are (exception id, rule path). Returns the
/// decision and the ids of the exceptions it relied on (to be cited).
pub fn waive(decision: Decision, waivers: &[(String, String)]) -> (Decision, Vec<String>) {
    if decision.verdict == Verdict::Allow || waivers.is_empty() {
        return (decision, vec![]);
    }
    let mut cited = Vec::new();
    let remaining: Vec<Reason> = decision
        .reasons
        .iter()
        .filter(|r| match waivers.iter().find(|(_, rule)| *rule == r.rule) {
            Some((id, _)) => {
                if !cited.contains(id) {
                    cited.push(id.clone());
                }
                false
            }
            None => true,
        })
        .cloned()
        .collect();
    if cited.is_empty() {
        return (decision, cited);
    }
    if remaining.is_empty() {
        let reasons = decision
            .reasons
            .into_iter()
            .map(|r| Reason {
                message: format!("{} (waived by an exception)", r.message),
                ..r
            })
            .collect();
        (
            Decision {
                verdict: Verdict::Allow,
                reasons,
            },
            cited,
        )
    } else {
        (
            Decision {
                verdict: decision.verdict,
                reasons: remaining,
            },
            cited,
        )
    }
}

/// A model pattern: the description itself, or a prefix ending in `*`; case-insensitive.
pub fn model_matches(pattern: &str, model: &str) -> bool {
    let model = model.to_lowercase();
    match pattern.strip_suffix('*') {
        Some(prefix) => model.starts_with(&prefix.to_lowercase()),
        None => model == pattern.to_lowercase(),
    }
}

/// Whether a step-up rule names `action`: what the policy calls a sensitive act.
pub fn is_sensitive(policy: &Policy, action: &str) -> bool {
    policy
        .step_up
        .iter()
        .any(|r| r.actions.iter().any(|p| action_matches(p, action)))
}

fn action_matches(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => pattern == action,
    }
}

/// Whether `action` may proceed in a session whose elevated `level` was reached at `level_time`.
/// The first matching rule decides; no matching rule = allowed at any level.
pub fn step_up(
    policy: &Policy,
    action: &str,
    level: Aal,
    level_time: Timestamp,
    now: Timestamp,
) -> Decision {
    let Some(rule) = policy
        .step_up
        .iter()
        .find(|r| r.actions.iter().any(|p| action_matches(p, action)))
    else {
        return Decision {
            verdict: Verdict::Allow,
            reasons: vec![],
        };
    };
    let path = format!("step_up.{}", rule.id);
    let fresh = now.0 - level_time.0 <= rule.max_age_secs.saturating_mul(1000);
    if level >= rule.level && fresh {
        return Decision {
            verdict: Verdict::Allow,
            reasons: vec![reason(
                path,
                "step_up_satisfied",
                format!(
                    "{} reached within {} s",
                    rule.level.as_str(),
                    rule.max_age_secs
                ),
            )],
        };
    }
    let message = if level < rule.level {
        format!(
            "{action} needs {}; this session is at {}",
            rule.level.as_str(),
            level.as_str()
        )
    } else {
        format!(
            "{action} needs {} reached within the last {} s",
            rule.level.as_str(),
            rule.max_age_secs
        )
    };
    Decision {
        verdict: Verdict::StepUpRequired(rule.level),
        reasons: vec![reason(path, "step_up_required", message)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse;

    fn regulated_policy() -> Policy {
        parse(
            r#"version = 1
populations = ["regulated"]
[enrolment]
max_passkeys = 2
[authenticators]
deny_aaguids = ["11111111-1111-1111-1111-111111111111"]
[authenticators.regulated]
attestation = "trusted"
synced = "deny"
user_verification = "required"
[[step_up]]
id = "admin"
actions = ["admin.*"]
level = "aal3"
max_age_secs = 600
"#,
        )
        .expect("valid policy")
    }

    fn synced_phone() -> AuthenticatorFacts {
        AuthenticatorFacts {
            aaguid: "fbfc3007-154e-4ecc-8c0b-6e020557d7bd".into(),
            attestation_format: "none".into(),
            attestation_verified: false,
            attestation_trusted: false,
            backup_eligible: true,
            user_verified: true,
            ..Default::default()
        }
    }

    fn security_key() -> AuthenticatorFacts {
        AuthenticatorFacts {
            aaguid: "cb69481e-8ff7-4039-93ec-0a2729a154a8".into(),
            attestation_format: "packed".into(),
            attestation_verified: true,
            attestation_trusted: true,
            backup_eligible: false,
            user_verified: true,
            ..Default::default()
        }
    }

    fn regulated() -> Subject {
        Subject {
            populations: vec!["regulated".into()],
        }
    }

    #[test]
    fn a_synced_passkey_is_refused_for_regulated_users_with_every_reason() {
        let d = registration(&regulated_policy(), &regulated(), &synced_phone(), true, 0);
        assert_eq!(d.verdict, Verdict::Deny);
        let rules: Vec<&str> = d.reasons.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(
            rules,
            vec![
                "authenticators.regulated.attestation",
                "authenticators.regulated.synced"
            ]
        );
        assert_eq!(d.reasons[1].code, "synced_passkey_not_allowed");
    }

    #[test]
    fn the_same_passkey_is_fine_for_everyone_else() {
        let d = registration(
            &regulated_policy(),
            &Subject::default(),
            &synced_phone(),
            true,
            0,
        );
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.reasons[0].rule, "authenticators");
    }

    #[test]
    fn flags_alone_do_not_make_a_passkey_device_bound() {
        let mut sneaky = synced_phone();
        sneaky.backup_eligible = false; // claims device-bound, but no trusted attestation
        let d = registration(&regulated_policy(), &regulated(), &sneaky, true, 0);
        assert!(d
            .reasons
            .iter()
            .any(|r| r.code == "synced_passkey_not_allowed"));
    }

    #[test]
    fn enrolment_limits_and_deny_lists_apply() {
        let p = regulated_policy();
        let d = registration(&p, &regulated(), &security_key(), true, 2);
        assert_eq!(
            (d.verdict.clone(), d.reasons[0].code),
            (Verdict::Deny, "too_many_passkeys")
        );
        let d = registration(&p, &regulated(), &security_key(), false, 0);
        assert_eq!(d.reasons[0].code, "invitation_required");
        let mut denied = security_key();
        denied.aaguid = "11111111-1111-1111-1111-111111111111".into();
        let d = registration(&p, &regulated(), &denied, true, 0);
        assert_eq!(
            d.reasons[0].rule, "authenticators.regulated.deny_aaguids",
            "overrides inherit the default deny list"
        );
    }

    #[test]
    fn assurance_levels_follow_the_requirements() {
        let p = Policy::default();
        assert_eq!(assurance(&p, &security_key()).0, Aal::Aal3);
        assert_eq!(assurance(&p, &synced_phone()).0, Aal::Aal2);
        let mut presence_only = synced_phone();
        presence_only.user_verified = false;
        let (level, why) = assurance(&p, &presence_only);
        assert_eq!(level, Aal::Aal1);
        assert!(why.message.contains("user_verified"), "{why:?}");
    }

    #[test]
    fn level_is_the_level_assurance_explains() {
        let strict = parse(
            "version = 1\n[assurance]\naal2 = [\"user_verified\", \"device_bound\"]\naal3 = [\"user_verified\", \"device_bound\", \"trusted_attestation\"]\n",
        )
        .expect("valid policy");
        for p in [Policy::default(), regulated_policy(), strict] {
            for bits in 0..8u8 {
                let mut f = security_key();
                f.user_verified = bits & 1 != 0;
                f.backup_eligible = bits & 2 != 0;
                f.attestation_trusted = bits & 4 != 0;
                assert_eq!(level(&p, &f), assurance(&p, &f).0, "{f:?}");
            }
        }
        let mut unverified = security_key();
        unverified.user_verified = false;
        assert_eq!(level(&Policy::default(), &unverified), Aal::Aal1);
    }

    #[test]
    fn a_credential_that_stopped_complying_must_re_enrol() {
        let d = sign_in(&regulated_policy(), &regulated(), &synced_phone());
        assert_eq!(d.verdict, Verdict::ReEnrolmentRequired);
        assert_eq!(
            sign_in(&regulated_policy(), &regulated(), &security_key()).verdict,
            Verdict::Allow
        );
    }

    #[test]
    fn step_up_needs_the_level_recently() {
        let p = regulated_policy();
        let t0 = Timestamp(1_000_000);
        let at = |secs: i64| Timestamp(t0.0 + secs * 1000);
        assert_eq!(
            step_up(&p, "admin.users.suspend", Aal::Aal3, t0, at(600)).verdict,
            Verdict::Allow
        );
        assert_eq!(
            step_up(&p, "admin.users.suspend", Aal::Aal3, t0, at(601)).verdict,
            Verdict::StepUpRequired(Aal::Aal3),
            "expired"
        );
        let d = step_up(&p, "admin.users.suspend", Aal::Aal2, t0, at(1));
        assert_eq!(
            (d.verdict, d.reasons[0].rule.as_str()),
            (Verdict::StepUpRequired(Aal::Aal3), "step_up.admin")
        );
        assert_eq!(
            step_up(&p, "me.credentials.rename", Aal::Aal1, t0, at(9999)).verdict,
            Verdict::Allow,
            "no rule matches"
        );
        assert_eq!(
            step_up(&p, "administrator", Aal::Aal1, t0, at(0)).verdict,
            Verdict::Allow,
            "admin.* does not match administrator"
        );
    }

    fn mds_policy() -> Policy {
        parse(
            r#"version = 1
[authenticators]
allow_models = ["YubiKey 5*"]
deny_models = ["YubiKey 5 Series with Lightning"]
min_certification = "L2"
"#,
        )
        .expect("valid policy")
    }

    fn yubikey(model: &str, level: Option<CertificationLevel>) -> AuthenticatorFacts {
        AuthenticatorFacts {
            model: Some(model.into()),
            certification: level,
            mds_statuses: vec!["FIDO_CERTIFIED_L2".into()],
            ..security_key()
        }
    }

    fn codes(d: &Decision) -> Vec<(&str, &str)> {
        d.reasons
            .iter()
            .map(|r| (r.rule.as_str(), r.code))
            .collect()
    }

    #[test]
    fn models_are_matched_by_mds_description() {
        let p = mds_policy();
        let s = Subject::default();
        let ok = registration(
            &p,
            &s,
            &yubikey("YubiKey 5 Series with NFC", Some(CertificationLevel::L2)),
            true,
            0,
        );
        assert_eq!(ok.verdict, Verdict::Allow, "{ok:?}");
        let denied = registration(
            &p,
            &s,
            &yubikey(
                "yubikey 5 series with lightning",
                Some(CertificationLevel::L2),
            ),
            true,
            0,
        );
        assert_eq!(
            codes(&denied),
            vec![("authenticators.deny_models", "authenticator_denied")]
        );
        let other = registration(
            &p,
            &s,
            &yubikey("Feitian ePass", Some(CertificationLevel::L2)),
            true,
            0,
        );
        assert_eq!(
            codes(&other),
            vec![("authenticators.allow_models", "authenticator_not_allowed")]
        );
        // A model MDS does not know matches no pattern.
        let unknown = AuthenticatorFacts {
            model: None,
            ..yubikey("x", Some(CertificationLevel::L2))
        };
        assert!(codes(&registration(&p, &s, &unknown, true, 0))
            .contains(&("authenticators.allow_models", "authenticator_not_allowed")));
        assert!(model_matches("YubiKey 5*", "YUBIKEY 5 NFC"));
        assert!(!model_matches("YubiKey 5", "YubiKey 5 NFC"));
    }

    #[test]
    fn certification_counts_only_with_a_trusted_attestation() {
        let p = mds_policy();
        let s = Subject::default();
        let low = yubikey("YubiKey 5 NFC", Some(CertificationLevel::L1Plus));
        assert_eq!(
            codes(&registration(&p, &s, &low, true, 0)),
            vec![(
                "authenticators.min_certification",
                "certification_insufficient"
            )]
        );
        let claimed = AuthenticatorFacts {
            attestation_trusted: false,
            ..yubikey("YubiKey 5 NFC", Some(CertificationLevel::L3))
        };
        let d = registration(&p, &s, &claimed, true, 0);
        assert_eq!(
            codes(&d),
            vec![(
                "authenticators.min_certification",
                "certification_insufficient"
            )]
        );
        assert!(d.reasons[0].message.contains("not trusted"), "{d:?}");
        let good = yubikey("YubiKey 5 NFC", Some(CertificationLevel::L3));
        assert_eq!(registration(&p, &s, &good, true, 0).verdict, Verdict::Allow);
    }

    #[test]
    fn compromised_models_are_refused_by_default_and_force_re_enrolment() {
        let p = Policy::default();
        let s = Subject::default();
        let revoked = AuthenticatorFacts {
            mds_statuses: vec![
                "FIDO_CERTIFIED_L1".into(),
                "USER_VERIFICATION_BYPASS".into(),
            ],
            ..synced_phone()
        };
        let d = registration(&p, &s, &revoked, true, 0);
        assert_eq!(
            codes(&d),
            vec![(
                "authenticators.deny_statuses",
                "authenticator_status_denied"
            )]
        );
        assert!(d.reasons[0].message.contains("USER_VERIFICATION_BYPASS"));
        assert_eq!(
            sign_in(&p, &s, &revoked).verdict,
            Verdict::ReEnrolmentRequired
        );
        let lenient = parse("version = 1\n[authenticators]\ndeny_statuses = [\"REVOKED\"]\n")
            .expect("valid policy");
        assert_eq!(sign_in(&lenient, &s, &revoked).verdict, Verdict::Allow);
    }

    #[test]
    fn exceptions_waive_only_the_rules_they_name() {
        let p = regulated_policy();
        let d = registration(&p, &regulated(), &synced_phone(), true, 0);
        assert_eq!(d.verdict, Verdict::Deny);
        let rules: Vec<String> = d.reasons.iter().map(|r| r.rule.clone()).collect();
        // Waiving one of several broken rules leaves a refusal, citing the exception.
        let (partial, cited) = waive(d.clone(), &[("x1".into(), rules[0].clone())]);
        assert_eq!(partial.verdict, Verdict::Deny);
        assert_eq!(partial.reasons.len(), rules.len() - 1);
        assert_eq!(cited, vec!["x1"]);
        // Waiving all of them allows it; an unrelated exception changes nothing.
        let all: Vec<(String, String)> = rules
            .iter()
            .map(|r| ("x2".to_string(), r.clone()))
            .collect();
        let (allowed, cited) = waive(d.clone(), &all);
        assert_eq!(
            (allowed.verdict, cited),
            (Verdict::Allow, vec!["x2".to_string()])
        );
        assert!(allowed.reasons[0].message.contains("waived"));
        let (same, cited) = waive(d.clone(), &[("x3".into(), "enrolment.max_passkeys".into())]);
        assert_eq!((same, cited.len()), (d, 0));
    }
}
