//! The shared storage suite: every `Store` operation, its tenant scoping and its single-use and
//! atomicity guarantees, run against a real SQLite file and a real PostgreSQL database.

use keyplane_core::audit::{Actor, ChainVerifier, CheckpointKey, NewEvent};
use keyplane_core::*;
use keyplane_store::{
    AssertionRecord, AuditBatch, AuditFilter, CredentialFacts, ImportedUser, PolicySubject,
    SqlStore, Store, StoreError,
};
use keyplane_testkit::{Backend, TestDatabase};

struct Fixture {
    store: SqlStore,
    db: TestDatabase,
}

async fn fixture(backend: Backend) -> Fixture {
    let db = TestDatabase::new(backend).await;
    let store = SqlStore::connect(&db.url, 8)
        .await
        .expect("connect and migrate");
    Fixture { store, db }
}

impl Fixture {
    async fn done(self) {
        self.store.close().await;
        self.db.drop_database().await;
    }
}

/// No audit events (the suite's audit tests below check them separately).
fn none() -> AuditBatch<'static> {
    AuditBatch::new(Timestamp(0), &[])
}

fn purged(sessions: u64, invitations: u64) -> NewEvent {
    NewEvent::new(Actor::system("test"), "maintenance.purged", "tenant", "t")
        .details(serde_json::json!({ "sessions": sessions, "invitations": invitations }))
}

fn tenant(name: &str) -> Tenant {
    Tenant {
        id: TenantId::generate(),
        name: name.into(),
        rp_id: format!("{name}.test"),
        rp_name: name.into(),
        origins: vec![format!("https://{name}.test")],
        hostnames: vec![format!("{name}.test"), format!("login.{name}.test")],
        created_at: Timestamp(1_000),
    }
}

fn user(t: &Tenant, name: &str) -> User {
    User {
        id: UserId::generate(),
        tenant_id: t.id.clone(),
        username: name.into(),
        display_name: name.to_uppercase(),
        user_handle: uuid::Uuid::new_v4().as_bytes().to_vec(),
        status: UserStatus::Active,
        role: None,
        created_at: Timestamp(2_000),
    }
}

fn credential(t: &Tenant, u: &User, raw_id: &[u8]) -> Credential {
    Credential {
        id: CredentialRecordId::generate(),
        tenant_id: t.id.clone(),
        user_id: u.id.clone(),
        credential_id: raw_id.to_vec(),
        public_key: vec![0xa5, 1, 2],
        sign_count: 5,
        aaguid: "00000000-0000-0000-0000-000000000000".into(),
        transports: vec!["internal".into(), "hybrid".into()],
        backup_eligible: true,
        backup_state: false,
        attestation_format: "none".into(),
        attestation_type: "none".into(),
        user_verified: true,
        nickname: "Phone".into(),
        created_at: Timestamp(3_000),
        last_used_at: None,
        status: CredentialStatus::Active,
        status_reason: None,
        library_state: "{}".into(),
    }
}

fn ceremony(t: &Tenant, purpose: CeremonyPurpose, expires: i64) -> Ceremony {
    Ceremony {
        id: CeremonyId::generate(),
        tenant_id: t.id.clone(),
        purpose,
        user_id: None,
        enrolment_id: None,
        state: "{\"challenge\":\"x\"}".into(),
        created_at: Timestamp(0),
        expires_at: Timestamp(expires),
        session_id: None,
        level: None,
    }
}

fn session(t: &Tenant, u: &User, token: &str) -> Session {
    Session {
        id: SessionId::generate(),
        tenant_id: t.id.clone(),
        user_id: u.id.clone(),
        token_hash: TokenHash::of(token.as_bytes()),
        aal: Aal::Aal2,
        amr: vec![Amr::Pop, Amr::User, Amr::Mfa],
        auth_time: Timestamp(4_000),
        credential_id: None,
        created_at: Timestamp(4_000),
        expires_at: Timestamp(90_000),
        elevated: None,
        restricted: None,
    }
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
            if keyplane_testkit::database::postgres_skip_allowed() && keyplane_testkit::postgres_admin_url().is_none() { return; }
            super::$name(super::Backend::Postgres).await
        } )* }
    };
}

async fn tenants_round_trip_and_names_and_hostnames_are_unique(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    assert_eq!(s.migration_level().await.unwrap(), 3);
    let acme = tenant("acme");
    s.create_tenant(&acme, none()).await.unwrap();
    assert_eq!(s.tenant_by_name("acme").await.unwrap().unwrap(), acme);
    assert_eq!(
        s.tenant_by_hostname("login.acme.test")
            .await
            .unwrap()
            .unwrap()
            .id,
        acme.id
    );
    assert!(s.tenant_by_hostname("nope.test").await.unwrap().is_none());
    let mut dup = tenant("acme");
    dup.hostnames = vec!["other.test".into()];
    assert!(matches!(
        s.create_tenant(&dup, none()).await,
        Err(StoreError::Conflict(_))
    ));
    let mut host_clash = tenant("globex");
    host_clash.hostnames = vec!["acme.test".into()];
    assert!(matches!(
        s.create_tenant(&host_clash, none()).await,
        Err(StoreError::Conflict(_))
    ));
    // A failed create leaves nothing half-written.
    assert!(s.tenant_by_name("globex").await.unwrap().is_none());
    assert_eq!(s.list_tenants().await.unwrap().len(), 1);
    f.done().await;
}

async fn users_are_unique_per_tenant_and_scoped(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    let alice = user(&a, "alice");
    s.create_user(&alice, none()).await.unwrap();
    assert!(matches!(
        s.create_user(&user(&a, "alice"), none()).await,
        Err(StoreError::Conflict(_))
    ));
    s.create_user(&user(&b, "alice"), none())
        .await
        .expect("same name in another tenant");
    assert_eq!(
        s.user_by_username(&a.id, "alice").await.unwrap().unwrap(),
        alice
    );
    assert_eq!(
        s.user_by_handle(&a.id, &alice.user_handle)
            .await
            .unwrap()
            .unwrap()
            .id,
        alice.id
    );
    // Tenant scoping: A's user is invisible from B by id and by handle.
    assert!(s.user_by_id(&b.id, &alice.id).await.unwrap().is_none());
    assert!(s
        .user_by_handle(&b.id, &alice.user_handle)
        .await
        .unwrap()
        .is_none());
    assert_eq!(s.list_users(&a.id).await.unwrap().len(), 1);
    f.done().await;
}

async fn ceremonies_are_taken_once_for_their_tenant_and_purpose(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    let c = ceremony(&a, CeremonyPurpose::SignIn, 10_000);
    s.insert_ceremony(&c).await.unwrap();
    assert!(
        s.take_ceremony(&b.id, &c.id, CeremonyPurpose::SignIn)
            .await
            .unwrap()
            .is_none(),
        "other tenant"
    );
    assert!(
        s.take_ceremony(&a.id, &c.id, CeremonyPurpose::Enrolment)
            .await
            .unwrap()
            .is_none(),
        "other purpose"
    );
    assert_eq!(
        s.take_ceremony(&a.id, &c.id, CeremonyPurpose::SignIn)
            .await
            .unwrap()
            .unwrap(),
        c
    );
    assert!(
        s.take_ceremony(&a.id, &c.id, CeremonyPurpose::SignIn)
            .await
            .unwrap()
            .is_none(),
        "single use"
    );
    // Expired ones are purged; live ones stay.
    let old = ceremony(&a, CeremonyPurpose::SignIn, 100);
    let live = ceremony(&a, CeremonyPurpose::SignIn, 10_000);
    s.insert_ceremony(&old).await.unwrap();
    s.insert_ceremony(&live).await.unwrap();
    assert_eq!(
        s.purge_expired_ceremonies(Timestamp(5_000)).await.unwrap(),
        1
    );
    assert!(s
        .take_ceremony(&a.id, &live.id, CeremonyPurpose::SignIn)
        .await
        .unwrap()
        .is_some());
    f.done().await;
}

async fn concurrent_takes_of_one_ceremony_yield_it_once(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, none()).await.unwrap();
    for _ in 0..10 {
        let c = ceremony(&a, CeremonyPurpose::SignIn, 10_000);
        s.insert_ceremony(&c).await.unwrap();
        let takes = futures::future::join_all((0..8).map(|_| {
            let s = s.clone();
            let (t, id) = (a.id.clone(), c.id.clone());
            tokio::spawn(async move {
                s.take_ceremony(&t, &id, CeremonyPurpose::SignIn)
                    .await
                    .unwrap()
                    .is_some()
            })
        }))
        .await;
        assert_eq!(
            takes.into_iter().filter(|r| *r.as_ref().unwrap()).count(),
            1
        );
    }
    f.done().await;
}

async fn enrolment_is_consumed_with_its_credential_atomically(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, none()).await.unwrap();
    let u = user(&a, "u");
    s.create_user(&u, none()).await.unwrap();
    let e = Enrolment {
        id: EnrolmentId::generate(),
        tenant_id: a.id.clone(),
        user_id: u.id.clone(),
        token_hash: TokenHash::of(b"token"),
        created_at: Timestamp(0),
        expires_at: Timestamp(9_000),
        used_at: None,
    };
    s.create_enrolment(&e, none()).await.unwrap();
    assert_eq!(
        s.enrolment_by_token(&a.id, &TokenHash::of(b"token"))
            .await
            .unwrap()
            .unwrap(),
        e
    );
    s.register_credential(
        &credential(&a, &u, b"cred-1"),
        Some(&e.id),
        AuditBatch::new(Timestamp(50), &[]),
    )
    .await
    .unwrap();
    let used = s
        .enrolment_by_token(&a.id, &TokenHash::of(b"token"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.used_at, Some(Timestamp(50)));
    // A second registration on the same invitation fails, and its credential is not kept.
    let second = s
        .register_credential(
            &credential(&a, &u, b"cred-2"),
            Some(&e.id),
            AuditBatch::new(Timestamp(60), &[]),
        )
        .await;
    assert!(matches!(second, Err(StoreError::Conflict(_))));
    assert!(s
        .credential_by_credential_id(&a.id, b"cred-2")
        .await
        .unwrap()
        .is_none());
    f.done().await;
}

async fn credentials_are_scoped_unique_and_managed(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    let (ua, ub) = (user(&a, "x"), user(&b, "x"));
    s.create_user(&ua, none()).await.unwrap();
    s.create_user(&ub, none()).await.unwrap();
    let c = credential(&a, &ua, b"same-id");
    s.register_credential(&c, None, none()).await.unwrap();
    assert_eq!(
        s.credential_by_credential_id(&a.id, b"same-id")
            .await
            .unwrap()
            .unwrap(),
        c
    );
    assert!(matches!(
        s.register_credential(&credential(&a, &ua, b"same-id"), None, none())
            .await,
        Err(StoreError::Conflict(_))
    ));
    s.register_credential(&credential(&b, &ub, b"same-id"), None, none())
        .await
        .expect("ids are unique per tenant");
    assert!(
        s.credential_by_id(&b.id, &c.id).await.unwrap().is_none(),
        "tenant scoped"
    );
    assert_eq!(
        s.list_credentials(&a.id, Some(&ua.id)).await.unwrap().len(),
        1
    );
    assert!(
        !s.rename_credential(&a.id, &ub.id, &c.id, "stolen", none())
            .await
            .unwrap(),
        "only the owner renames"
    );
    assert!(
        !s.rename_credential(&b.id, &ua.id, &c.id, "stolen", none())
            .await
            .unwrap(),
        "only in its tenant"
    );
    assert!(s
        .rename_credential(&a.id, &ua.id, &c.id, "Laptop", none())
        .await
        .unwrap());
    assert!(s
        .set_credential_status(&a.id, &c.id, CredentialStatus::Suspended, "test", none())
        .await
        .unwrap());
    let got = s.credential_by_id(&a.id, &c.id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.nickname.as_str(),
            got.status,
            got.status_reason.as_deref()
        ),
        ("Laptop", CredentialStatus::Suspended, Some("test"))
    );
    assert!(!s
        .set_credential_status(&b.id, &c.id, CredentialStatus::Revoked, "x", none())
        .await
        .unwrap());
    f.done().await;
}

async fn assertions_move_the_counter_forward_and_open_a_session_atomically(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, none()).await.unwrap();
    let u = user(&a, "u");
    s.create_user(&u, none()).await.unwrap();
    let c = credential(&a, &u, b"c");
    s.register_credential(&c, None, none()).await.unwrap();
    let record = |count: u32, sess: &'static Session| AssertionRecord {
        credential: &c.id,
        sign_count: count,
        backup_eligible: true,
        backup_state: true,
        library_state: "{\"updated\":true}",
        used_at: Timestamp(7_000),
        session: sess,
        step_up: None,
    };
    let s1: &'static Session = Box::leak(Box::new(session(&a, &u, "t1")));
    assert!(s
        .record_assertion(&a.id, &record(6, s1), none())
        .await
        .unwrap());
    let got = s.credential_by_id(&a.id, &c.id).await.unwrap().unwrap();
    assert_eq!(
        (got.sign_count, got.backup_state, got.last_used_at),
        (6, true, Some(Timestamp(7_000)))
    );
    assert_eq!(
        s.session_by_token(&a.id, &TokenHash::of(b"t1"))
            .await
            .unwrap()
            .unwrap(),
        *s1
    );
    // Equal or lower counter: refused, and no session is created.
    let s2: &'static Session = Box::leak(Box::new(session(&a, &u, "t2")));
    assert!(!s
        .record_assertion(&a.id, &record(6, s2), none())
        .await
        .unwrap());
    assert!(!s
        .record_assertion(&a.id, &record(3, s2), none())
        .await
        .unwrap());
    assert!(s
        .session_by_token(&a.id, &TokenHash::of(b"t2"))
        .await
        .unwrap()
        .is_none());
    // A suspended credential records nothing.
    s.set_credential_status(&a.id, &c.id, CredentialStatus::Suspended, "x", none())
        .await
        .unwrap();
    assert!(!s
        .record_assertion(&a.id, &record(9, s2), none())
        .await
        .unwrap());
    // Sessions are tenant scoped and revocable.
    let b = tenant("b");
    s.create_tenant(&b, none()).await.unwrap();
    assert!(s
        .session_by_token(&b.id, &TokenHash::of(b"t1"))
        .await
        .unwrap()
        .is_none());
    assert!(s
        .revoke_session(&a.id, &s1.id, AuditBatch::new(Timestamp(8_000), &[]))
        .await
        .unwrap());
    assert!(s
        .session_by_token(&a.id, &TokenHash::of(b"t1"))
        .await
        .unwrap()
        .is_none());
    // The revoked session is purged; nothing else was live.
    assert_eq!(
        s.purge_expired_sessions_and_enrolments(&a.id, Timestamp(50_000), &purged)
            .await
            .unwrap(),
        1
    );
    f.done().await;
}

async fn zero_counters_are_accepted_when_the_authenticator_does_not_count(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, none()).await.unwrap();
    let u = user(&a, "u");
    s.create_user(&u, none()).await.unwrap();
    let mut c = credential(&a, &u, b"c");
    c.sign_count = 0;
    s.register_credential(&c, None, none()).await.unwrap();
    for i in 0..3 {
        let sess = session(&a, &u, &format!("z{i}"));
        let r = AssertionRecord {
            credential: &c.id,
            sign_count: 0,
            backup_eligible: true,
            backup_state: true,
            library_state: "{}",
            used_at: Timestamp(1),
            session: &sess,
            step_up: None,
        };
        assert!(
            s.record_assertion(&a.id, &r, none()).await.unwrap(),
            "synced passkeys report 0 every time"
        );
    }
    // Live sessions survive a purge; expired ones (expires_at 90_000) go.
    assert_eq!(
        s.purge_expired_sessions_and_enrolments(&a.id, Timestamp(50_000), &purged)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.purge_expired_sessions_and_enrolments(&a.id, Timestamp(90_000), &purged)
            .await
            .unwrap(),
        3
    );
    f.done().await;
}

fn event(n: u32) -> NewEvent {
    NewEvent::new(Actor::system("test"), "test.event", "tenant", "t")
        .details(serde_json::json!({ "n": n }))
}

async fn all_events(s: &SqlStore, t: &TenantId) -> Vec<keyplane_core::audit::AuditEvent> {
    s.list_audit_events(
        t,
        &AuditFilter {
            limit: 100_000,
            ..AuditFilter::default()
        },
    )
    .await
    .unwrap()
}

fn verify(events: &[keyplane_core::audit::AuditEvent]) {
    let mut v = ChainVerifier::from_genesis();
    for e in events {
        v.check(e).unwrap_or_else(|b| panic!("chain broken: {b}"));
    }
}

async fn changes_and_their_events_commit_together(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, AuditBatch::new(Timestamp(1), &[event(1)]))
        .await
        .unwrap();
    let u = user(&a, "u");
    s.create_user(&u, AuditBatch::new(Timestamp(2), &[event(2)]))
        .await
        .unwrap();
    let c = credential(&a, &u, b"c");
    s.register_credential(
        &c,
        None,
        AuditBatch::new(Timestamp(3), &[event(3), event(4)]),
    )
    .await
    .unwrap();
    // A change that does not apply writes no event.
    let stranger = UserId::generate();
    assert!(!s
        .rename_credential(
            &a.id,
            &stranger,
            &c.id,
            "x",
            AuditBatch::new(Timestamp(4), &[event(99)])
        )
        .await
        .unwrap());
    // A change that fails writes no event either.
    let dup = s
        .register_credential(
            &credential(&a, &u, b"c"),
            None,
            AuditBatch::new(Timestamp(5), &[event(98)]),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));
    let events = all_events(s, &a.id).await;
    let ns: Vec<i64> = events
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.details).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, vec![1, 2, 3, 4]);
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    verify(&events);
    let (head_seq, head_hash) = s.audit_head(&a.id).await.unwrap();
    assert_eq!((head_seq, head_hash), (4, events[3].hash.clone()));
    // Filters and paging.
    let page = s
        .list_audit_events(
            &a.id,
            &AuditFilter {
                after_seq: 2,
                limit: 1,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
    let timed = s
        .list_audit_events(
            &a.id,
            &AuditFilter {
                since: Some(Timestamp(2)),
                until: Some(Timestamp(3)),
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(timed.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
    // Chains are per tenant.
    let b = tenant("b");
    s.create_tenant(&b, AuditBatch::new(Timestamp(1), &[event(1)]))
        .await
        .unwrap();
    assert_eq!(all_events(s, &b.id).await[0].seq, 1);
    f.done().await;
}

async fn concurrent_appends_never_fork_the_chain(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, none()).await.unwrap();
    let tasks = (0..8u32).map(|w| {
        let s = s.clone();
        let t = a.id.clone();
        tokio::spawn(async move {
            for i in 0..25u32 {
                s.append_events(
                    &t,
                    AuditBatch::new(Timestamp(i64::from(i)), &[event(w * 100 + i)]),
                )
                .await
                .unwrap();
            }
        })
    });
    for r in futures::future::join_all(tasks).await {
        r.unwrap();
    }
    let events = all_events(s, &a.id).await;
    assert_eq!(events.len(), 200);
    verify(&events);
    let prevs: std::collections::HashSet<_> = events.iter().map(|e| e.prev_hash.clone()).collect();
    assert_eq!(prevs.len(), 200, "no two events share a predecessor");
    f.done().await;
}

async fn checkpoints_are_stored_once(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, AuditBatch::new(Timestamp(1), &[event(1)]))
        .await
        .unwrap();
    let (seq, hash) = s.audit_head(&a.id).await.unwrap();
    let (_, key) = CheckpointKey::generate(&mut rand::rng());
    let cp = key.sign(&a.id, seq, &hash, Timestamp(9));
    s.insert_checkpoint(&cp).await.unwrap();
    s.insert_checkpoint(&cp).await.unwrap();
    let stored = s.list_checkpoints(&a.id).await.unwrap();
    assert_eq!(stored, vec![cp.clone()]);
    assert!(stored[0].verify_with(&key.public()));
    f.done().await;
}

async fn policy_versions_activate_and_roll_back(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    assert!(s.active_policy(&a.id).await.unwrap().is_none());
    assert_eq!(
        s.activate_policy(
            &a.id,
            "version = 1\n# one\n",
            "cli:x",
            AuditBatch::new(Timestamp(1), &[event(1)])
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(
        s.activate_policy(
            &a.id,
            "version = 1\n# two\n",
            "cli:y",
            AuditBatch::new(Timestamp(2), &[event(2)])
        )
        .await
        .unwrap(),
        2
    );
    assert_eq!(
        s.activate_policy(&b.id, "version = 1\n# b\n", "cli:z", none())
            .await
            .unwrap(),
        1,
        "versions are per tenant"
    );
    let active = s.active_policy(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (
            active.version,
            active.document.as_str(),
            active.created_by.as_str()
        ),
        (2, "version = 1\n# two\n", "cli:y")
    );
    assert!(s
        .reactivate_policy(&a.id, 1, AuditBatch::new(Timestamp(3), &[event(3)]))
        .await
        .unwrap());
    assert!(!s
        .reactivate_policy(&a.id, 9, AuditBatch::new(Timestamp(4), &[event(99)]))
        .await
        .unwrap());
    assert_eq!(s.active_policy(&a.id).await.unwrap().unwrap().version, 1);
    let history = s.list_policies(&a.id).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| (v.version, v.active))
            .collect::<Vec<_>>(),
        vec![(1, true), (2, false)]
    );
    let ns: Vec<i64> = all_events(s, &a.id)
        .await
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.details).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        ns,
        vec![1, 2, 3],
        "each activation audited; a refused rollback records nothing"
    );
    f.done().await;
}

async fn populations_are_replaced_per_user(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, none()).await.unwrap();
    let u = user(&a, "u");
    s.create_user(&u, none()).await.unwrap();
    s.set_user_populations(
        &a.id,
        &u.id,
        &["workforce".into(), "regulated".into()],
        none(),
    )
    .await
    .unwrap();
    assert_eq!(
        s.user_populations(&a.id, &u.id).await.unwrap(),
        vec!["regulated", "workforce"]
    );
    s.set_user_populations(&a.id, &u.id, &["contractors".into()], none())
        .await
        .unwrap();
    assert_eq!(
        s.user_populations(&a.id, &u.id).await.unwrap(),
        vec!["contractors"]
    );
    let b = tenant("b");
    s.create_tenant(&b, none()).await.unwrap();
    assert!(
        s.user_populations(&b.id, &u.id).await.unwrap().is_empty(),
        "tenant scoped"
    );
    f.done().await;
}

/// 150 users with 0 to 3 credentials and 0 to 2 populations: more rows than one multi-row
/// `INSERT` takes, so the import spans several statements of each kind.
fn import_batch(t: &Tenant) -> Vec<ImportedUser> {
    (0..150u32)
        .map(|i| {
            let mut u = user(t, &format!("bulk{i:03}"));
            u.role = (i % 50 == 0).then(|| "owner".to_string());
            let credentials = (0..i % 4)
                .map(|k| {
                    let mut c = credential(t, &u, format!("bulk-{i}-{k}").as_bytes());
                    c.created_at = Timestamp(10_000 + i64::from(i * 4 + k));
                    c.backup_eligible = k % 2 == 0;
                    c.user_verified = i % 3 != 0;
                    c.aaguid = format!("{:08x}-0000-0000-0000-000000000000", k);
                    c.last_used_at = (k == 1).then_some(Timestamp(20_000));
                    if i % 7 == 0 {
                        c.status = CredentialStatus::Revoked;
                        c.status_reason = Some("removed_by_user".into());
                    }
                    c
                })
                .collect();
            let populations = match i % 3 {
                0 => vec![],
                1 => vec!["workforce".to_string()],
                _ => vec!["regulated".to_string(), "workforce".to_string()],
            };
            ImportedUser {
                user: u,
                populations,
                credentials,
            }
        })
        .collect()
}

async fn bulk_imports_write_what_single_writes_do_or_nothing(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    let batch = import_batch(&a);
    let events: Vec<NewEvent> = (1..=3).map(event).collect();
    s.import_users(&a.id, &batch, AuditBatch::new(Timestamp(5), &events))
        .await
        .unwrap();
    let mut want_users: Vec<User> = batch.iter().map(|i| i.user.clone()).collect();
    want_users.sort_by(|x, y| x.username.cmp(&y.username));
    assert_eq!(s.list_users(&a.id).await.unwrap(), want_users);
    let mut want_credentials: Vec<Credential> =
        batch.iter().flat_map(|i| i.credentials.clone()).collect();
    want_credentials
        .sort_by(|x, y| (x.created_at.0, x.id.as_str()).cmp(&(y.created_at.0, y.id.as_str())));
    assert!(want_credentials.len() > 200);
    assert_eq!(
        s.list_credentials(&a.id, None).await.unwrap(),
        want_credentials
    );
    let mut want_memberships: Vec<(UserId, String)> = batch
        .iter()
        .flat_map(|i| i.populations.iter().map(|p| (i.user.id.clone(), p.clone())))
        .collect();
    want_memberships.sort_by(|x, y| (x.0.as_str(), &x.1).cmp(&(y.0.as_str(), &y.1)));
    assert_eq!(
        s.all_user_populations(&a.id).await.unwrap(),
        want_memberships
    );
    let recorded = all_events(s, &a.id).await;
    assert_eq!(
        recorded.len(),
        3,
        "the batch's events, in the same transaction"
    );
    verify(&recorded);
    assert!(
        s.list_users(&b.id).await.unwrap().is_empty(),
        "tenant scoped"
    );

    // A credential id already taken: the whole import fails, with its events.
    let mut again = import_batch(&a);
    again.truncate(1);
    again[0].user = user(&a, "late");
    again.push(ImportedUser {
        user: user(&a, "clash"),
        populations: vec!["workforce".into()],
        credentials: vec![],
    });
    let taken = credential(&a, &again[1].user, b"bulk-1-0");
    again[1].credentials.push(taken);
    assert!(matches!(
        s.import_users(&a.id, &again, AuditBatch::new(Timestamp(6), &[event(4)]))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.user_by_username(&a.id, "late").await.unwrap().is_none());
    assert!(s.user_by_username(&a.id, "clash").await.unwrap().is_none());
    assert_eq!(all_events(s, &a.id).await.len(), 3);

    // Rows of another tenant: refused before anything is written.
    let mut stray = import_batch(&b);
    stray.truncate(2);
    let foreign = credential(&a, &stray[1].user, b"stray");
    stray[1].credentials.push(foreign);
    assert!(matches!(
        s.import_users(&b.id, &stray, AuditBatch::new(Timestamp(7), &[event(5)]))
            .await,
        Err(StoreError::Database(m)) if m.contains("another tenant")
    ));
    assert!(s.list_users(&b.id).await.unwrap().is_empty());
    assert!(all_events(s, &b.id).await.is_empty());
    f.done().await;
}

/// What `policy_subjects` must return, read the slow way: every user, then each active user's
/// populations and credentials one user at a time.
async fn subjects_one_by_one(s: &SqlStore, t: &TenantId) -> Vec<PolicySubject> {
    let mut out = Vec::new();
    for u in s.list_users(t).await.unwrap() {
        if u.status != UserStatus::Active {
            continue;
        }
        let mut credentials: Vec<CredentialFacts> = s
            .list_credentials(t, Some(&u.id))
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.status == CredentialStatus::Active)
            .map(|c| CredentialFacts {
                aaguid: c.aaguid,
                attestation_format: c.attestation_format,
                attestation_type: c.attestation_type,
                backup_eligible: c.backup_eligible,
                user_verified: c.user_verified,
            })
            .collect();
        credentials.sort_by(facts_order);
        out.push(PolicySubject {
            populations: s.user_populations(t, &u.id).await.unwrap(),
            user_id: u.id,
            credentials,
        });
    }
    out.sort_by(|a, b| a.user_id.as_str().cmp(b.user_id.as_str()));
    out
}

fn facts_order(a: &CredentialFacts, b: &CredentialFacts) -> std::cmp::Ordering {
    (
        &a.aaguid,
        &a.attestation_format,
        &a.attestation_type,
        a.backup_eligible,
        a.user_verified,
    )
        .cmp(&(
            &b.aaguid,
            &b.attestation_format,
            &b.attestation_type,
            b.backup_eligible,
            b.user_verified,
        ))
}

async fn policy_subjects_are_what_per_user_reads_give(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    // Written one at a time, as the services do ...
    let mut users = Vec::new();
    for i in 0..6u32 {
        let mut u = user(&a, &format!("u{i}"));
        if i == 4 {
            u.status = UserStatus::Suspended;
        }
        s.create_user(&u, none()).await.unwrap();
        let populations: Vec<String> = match i % 3 {
            0 => vec![],
            1 => vec!["workforce".into(), "regulated".into()],
            _ => vec!["contractors".into()],
        };
        s.set_user_populations(&a.id, &u.id, &populations, none())
            .await
            .unwrap();
        for k in 0..i % 4 {
            let mut c = credential(&a, &u, format!("c-{i}-{k}").as_bytes());
            c.aaguid = format!("{k:08x}-0000-0000-0000-00000000000{i}");
            c.attestation_format = ["none", "packed", "tpm"][k as usize % 3].into();
            c.attestation_type = ["none", "basic", "unverifiable"][k as usize % 3].into();
            c.backup_eligible = k % 2 == 0;
            c.user_verified = i % 2 == 0;
            s.register_credential(&c, None, none()).await.unwrap();
            if (i, k) == (3, 1) {
                s.set_credential_status(&a.id, &c.id, CredentialStatus::Revoked, "x", none())
                    .await
                    .unwrap();
            }
            if (i, k) == (3, 2) {
                s.set_credential_status(&a.id, &c.id, CredentialStatus::Suspended, "x", none())
                    .await
                    .unwrap();
            }
        }
        users.push(u);
    }
    // ... and in bulk.
    s.import_users(&a.id, &import_batch(&a), none())
        .await
        .unwrap();
    // Another tenant's user, population and credential stay out.
    let stranger = user(&b, "u0");
    s.create_user(&stranger, none()).await.unwrap();
    s.set_user_populations(&b.id, &stranger.id, &["workforce".into()], none())
        .await
        .unwrap();
    s.register_credential(&credential(&b, &stranger, b"c-b"), None, none())
        .await
        .unwrap();

    let last = std::sync::atomic::AtomicU64::new(0);
    let mut got = s
        .policy_subjects(&a.id, &|n| {
            last.store(n, std::sync::atomic::Ordering::Relaxed)
        })
        .await
        .unwrap();
    for subject in &mut got {
        subject.credentials.sort_by(facts_order);
    }
    got.sort_by(|x, y| x.user_id.as_str().cmp(y.user_id.as_str()));
    let want = subjects_one_by_one(s, &a.id).await;
    assert_eq!(
        want.len(),
        155,
        "5 active users written singly, 150 imported"
    );
    assert_eq!(got, want);
    assert!(
        !got.iter().any(|g| g.user_id == users[4].id),
        "a suspended user is not evaluated"
    );
    let three = got.iter().find(|g| g.user_id == users[3].id).unwrap();
    assert_eq!(
        three.credentials.len(),
        1,
        "of three, the revoked and the suspended credential are not evaluated"
    );
    let one = got.iter().find(|g| g.user_id == users[1].id).unwrap();
    assert_eq!(
        one.populations,
        vec!["regulated", "workforce"],
        "in name order"
    );
    // Rows read: active users, every membership, every active credential (a suspended user's
    // included, then dropped).
    let memberships = s.all_user_populations(&a.id).await.unwrap().len() as u64;
    let active_credentials = s
        .list_credentials(&a.id, None)
        .await
        .unwrap()
        .iter()
        .filter(|c| c.status == CredentialStatus::Active)
        .count() as u64;
    assert_eq!(
        last.load(std::sync::atomic::Ordering::Relaxed),
        155 + memberships + active_credentials
    );
    assert_eq!(
        s.policy_subjects(&b.id, &|_| {}).await.unwrap().len(),
        1,
        "tenant scoped"
    );
    f.done().await;
}

suite!(
    tenants_round_trip_and_names_and_hostnames_are_unique,
    users_are_unique_per_tenant_and_scoped,
    ceremonies_are_taken_once_for_their_tenant_and_purpose,
    concurrent_takes_of_one_ceremony_yield_it_once,
    enrolment_is_consumed_with_its_credential_atomically,
    credentials_are_scoped_unique_and_managed,
    assertions_move_the_counter_forward_and_open_a_session_atomically,
    zero_counters_are_accepted_when_the_authenticator_does_not_count,
    changes_and_their_events_commit_together,
    concurrent_appends_never_fork_the_chain,
    checkpoints_are_stored_once,
    policy_versions_activate_and_roll_back,
    populations_are_replaced_per_user,
    bulk_imports_write_what_single_writes_do_or_nothing,
    policy_subjects_are_what_per_user_reads_give,
);
