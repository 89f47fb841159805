//! Simulating a candidate policy against the live population: for every user and credential, the
//! verdict under the active policy and under the candidate, summed per population. Pure: the
//! caller loads users and credentials, this only counts.

use super::document::Policy;
use super::evaluate::{authenticator_violations, level, AuthenticatorFacts, Subject};
use crate::assurance::Aal;
use std::collections::BTreeMap;

/// One user as the simulation sees them.
pub struct SimUser {
    pub populations: Vec<String>,
    /// Facts of each active credential (with the UV flag seen at registration).
    pub credentials: Vec<AuthenticatorFacts>,
}

/// What changes for one population.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PopulationImpact {
    pub users: u64,
    pub credentials: u64,
    /// Compliant now, not under the candidate: flagged for re-enrolment if applied.
    pub credentials_becoming_non_compliant: u64,
    pub credentials_becoming_compliant: u64,
    /// Users left with no compliant credential under the candidate (but with one now).
    pub users_losing_every_compliant_credential: u64,
    /// Users whose best credential reaches a lower level under the candidate.
    pub users_losing_level: u64,
    /// Users with no credential able to reach aal3 under the candidate.
    pub users_without_aal3: u64,
    /// The rules (path) that make credentials non-compliant, with counts.
    pub rules: BTreeMap<String, u64>,
    /// AAGUIDs of the credentials becoming non-compliant, with counts.
    pub authenticators: BTreeMap<String, u64>,
}

/// Per population (users in none are under `(none)`; a user counts in the first of their
/// populations that the candidate lists, else the first of their own).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SimulationReport {
    pub populations: BTreeMap<String, PopulationImpact>,
}

fn best(policy: &Policy, user: &SimUser) -> Option<Aal> {
    user.credentials.iter().map(|c| level(policy, c)).max()
}

pub fn simulate(
    current: &Policy,
    candidate: &Policy,
    users: &[SimUser],
    progress: &dyn Fn(u64),
) -> SimulationReport {
    let mut report = SimulationReport::default();
    for (i, user) in users.iter().enumerate() {
        let key = candidate
            .populations
            .iter()
            .find(|p| user.populations.contains(p))
            .or_else(|| user.populations.first())
            .cloned()
            .unwrap_or_else(|| "(none)".to_string());
        let impact = report.populations.entry(key).or_default();
        let subject = Subject {
            populations: user.populations.clone(),
        };
        impact.users += 1;
        let (mut compliant_now, mut compliant_then) = (0u64, 0u64);
        for facts in &user.credentials {
            impact.credentials += 1;
            let now_ok = authenticator_violations(current, &subject, facts).is_empty();
            let violations = authenticator_violations(candidate, &subject, facts);
            let then_ok = violations.is_empty();
            compliant_now += u64::from(now_ok);
            compliant_then += u64::from(then_ok);
            if now_ok && !then_ok {
                impact.credentials_becoming_non_compliant += 1;
                *impact
                    .authenticators
                    .entry(facts.aaguid.clone())
                    .or_default() += 1;
                for v in violations {
                    *impact.rules.entry(v.rule).or_default() += 1;
                }
            }
            if !now_ok && then_ok {
                impact.credentials_becoming_compliant += 1;
            }
        }
        if compliant_now > 0 && compliant_then == 0 {
            impact.users_losing_every_compliant_credential += 1;
        }
        let (before, after) = (best(current, user), best(candidate, user));
        if after < before {
            impact.users_losing_level += 1;
        }
        if after != Some(Aal::Aal3) {
            impact.users_without_aal3 += 1;
        }
        if i % 10_000 == 0 {
            progress(i as u64);
        }
    }
    progress(users.len() as u64);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse;

    fn facts(aaguid: &str, backup_eligible: bool) -> AuthenticatorFacts {
        AuthenticatorFacts {
            aaguid: aaguid.into(),
            attestation_format: "none".into(),
            attestation_verified: false,
            attestation_trusted: false,
            backup_eligible,
            user_verified: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_stricter_policy_reports_who_and_what_it_breaks() {
        let current = Policy::default();
        let candidate = parse(
            "version = 1\npopulations = [\"regulated\"]\n[authenticators.regulated]\nsynced = \"deny\"\n[authenticators]\ndeny_aaguids = [\"11111111-1111-1111-1111-111111111111\"]\n",
        )
        .unwrap();
        let users = vec![
            SimUser {
                populations: vec!["regulated".into()],
                credentials: vec![facts("aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", true)],
            },
            SimUser {
                populations: vec!["regulated".into()],
                credentials: vec![],
            },
            SimUser {
                populations: vec![],
                credentials: vec![
                    facts("11111111-1111-1111-1111-111111111111", false),
                    facts("bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb", true),
                ],
            },
        ];
        let r = simulate(&current, &candidate, &users, &|_| {});
        let reg = &r.populations["regulated"];
        assert_eq!(
            (
                reg.users,
                reg.credentials,
                reg.credentials_becoming_non_compliant
            ),
            (2, 1, 1)
        );
        assert_eq!(reg.users_losing_every_compliant_credential, 1);
        assert_eq!(reg.rules.get("authenticators.regulated.synced"), Some(&1));
        assert_eq!(
            reg.authenticators
                .get("aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"),
            Some(&1)
        );
        assert_eq!(reg.users_losing_level, 0, "the level rules did not change");
        let none = &r.populations["(none)"];
        assert_eq!(
            (
                none.users,
                none.credentials_becoming_non_compliant,
                none.users_losing_every_compliant_credential
            ),
            (1, 1, 0)
        );
        assert_eq!(none.rules.get("authenticators.deny_aaguids"), Some(&1));
    }

    #[test]
    fn the_same_policy_changes_nothing() {
        let p = Policy::default();
        let users = vec![SimUser {
            populations: vec![],
            credentials: vec![facts("aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", true)],
        }];
        let r = simulate(&p, &p, &users, &|_| {});
        let none = &r.populations["(none)"];
        assert_eq!(
            (
                none.credentials_becoming_non_compliant,
                none.credentials_becoming_compliant,
                none.users_losing_level
            ),
            (0, 0, 0)
        );
    }
}
