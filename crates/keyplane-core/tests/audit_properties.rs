//! Properties of the audit chain, over generated events: canonical JSON round-trips, and any
//! single change to a recorded event (any field, any byte) is caught by the verifier.

use keyplane_core::audit::{
    canonical_json, Actor, AuditEvent, ChainVerifier, NewEvent, Outcome, RequestContext, GENESIS,
};
use keyplane_core::{TenantId, Timestamp};
use proptest::prelude::*;
use serde_json::{json, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn new_event() -> impl Strategy<Value = NewEvent> {
    (
        "[a-z0-9-]{1,20}",
        prop_oneof![
            Just("credential.registered"),
            Just("authentication.failed"),
            Just("session.ended")
        ],
        "[a-z0-9-]{0,36}",
        any::<bool>(),
        prop::option::of("[ -~]{0,40}"),
        prop::option::of("[0-9.]{0,15}"),
        prop::option::of("\\PC{0,30}"),
        json_value(),
    )
        .prop_map(
            |(actor, action, target, failed, request_id, client_ip, user_agent, details)| {
                let mut e = NewEvent::new(Actor::admin(actor), action, "user", target)
                    .context(&RequestContext {
                        request_id,
                        client_ip,
                        user_agent,
                    })
                    .details(json!({ "x": details }));
                if failed {
                    e = e.outcome(Outcome::Failure, "signature_invalid");
                }
                e
            },
        )
}

fn chain(events: &[NewEvent]) -> Vec<AuditEvent> {
    let tenant = TenantId::parse("6f9619ff-8b86-d011-b42d-00c04fc964ff").expect("valid id");
    let mut prev = GENESIS.to_vec();
    events
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let seq = i as i64 + 1;
            let e = AuditEvent::seal(
                &tenant,
                seq,
                format!("id-{seq}"),
                Timestamp(seq * 7),
                n,
                &prev,
            );
            prev = e.hash.clone();
            e
        })
        .collect()
}

fn verifies(events: &[AuditEvent]) -> bool {
    let mut v = ChainVerifier::from_genesis();
    events.iter().all(|e| v.check(e).is_ok())
}

/// One field of one event changed, described for the failure message.
fn mutate(e: &mut AuditEvent, field: usize, salt: &str) {
    let bump = |s: &mut String| s.push_str(salt);
    match field % 12 {
        0 => bump(&mut e.actor_id),
        1 => bump(&mut e.action),
        2 => bump(&mut e.target_id),
        3 => bump(&mut e.outcome),
        4 => e.reasons.push(salt.into()),
        5 => e.request_id = Some(e.request_id.clone().unwrap_or_default() + salt),
        6 => {
            e.client_ip = match &e.client_ip {
                Some(_) => None,
                None => Some(salt.into()),
            }
        }
        7 => e.user_agent = Some(e.user_agent.clone().unwrap_or_default() + salt),
        8 => e.details = canonical_json(&json!({ "x": salt })),
        9 => e.time.0 += 1,
        10 => bump(&mut e.actor_type),
        _ => e.prev_hash[0] ^= 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn canonical_json_is_a_fixed_point_of_parse_and_encode(v in json_value()) {
        let text = canonical_json(&v);
        let back: Value = serde_json::from_str(&text).expect("canonical JSON parses");
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(canonical_json(&back), text);
    }

    #[test]
    fn any_chain_verifies(events in prop::collection::vec(new_event(), 1..12)) {
        prop_assert!(verifies(&chain(&events)));
    }

    #[test]
    fn any_single_field_change_is_caught(
        events in prop::collection::vec(new_event(), 1..10),
        which in any::<prop::sample::Index>(),
        field in 0usize..12,
        salt in "[a-z]{1,4}",
    ) {
        let mut c = chain(&events);
        let i = which.index(c.len());
        let before = c[i].clone();
        mutate(&mut c[i], field, &salt);
        prop_assume!(c[i] != before);
        prop_assert!(!verifies(&c), "field {} of event {} changed unnoticed", field, i + 1);
    }

    #[test]
    fn deleting_inserting_or_swapping_events_is_caught(
        events in prop::collection::vec(new_event(), 2..10),
        which in any::<prop::sample::Index>(),
        op in 0u8..3,
    ) {
        let mut c = chain(&events);
        let i = which.index(c.len() - 1);
        match op {
            0 => { c.remove(i); }
            1 => { let copy = c[i].clone(); c.insert(i + 1, copy); }
            _ => c.swap(i, i + 1),
        }
        prop_assert!(!verifies(&c));
    }
}
