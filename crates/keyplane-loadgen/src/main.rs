//! `keyplane-loadgen`: an HTTP load generator for Keyplane's sign-in path.
//!
//! Every measured operation is a full passkey sign-in over HTTP, as a browser would do it:
//! `POST /api/v1/authentication/options`, a real ECDSA P-256 signature by a software
//! authenticator (`keyplane_testkit::SoftAuthenticator`), `POST /api/v1/authentication/verify`
//! (which verifies the signature, updates the passkey and creates a session).
//!
//! # Two modes
//!
//! **Self-serve** (what BENCHMARKS.md uses): starts an in-process server through
//! `keyplane_testkit::TestServer` on a fresh database, invites and enrols its own users, and
//! drops the database at the end.
//!
//! ```text
//! cargo run --release -p keyplane-loadgen -- signin --self-serve sqlite --concurrency 8 --count 20000
//! KEYPLANE_TEST_POSTGRES_URL=postgres://keyplane:keyplane@localhost/keyplane \
//!   cargo run --release -p keyplane-loadgen -- signin --self-serve postgres --concurrency 32 --count 20000
//! cargo run --release -p keyplane-loadgen -- signin --self-serve sqlite --rate 500 --count 10000 --concurrency 32
//! ```
//!
//! Client and server then share the machine's cores (and one tokio runtime): the figures are a
//! lower bound for a server running alone.
//!
//! **External**: against a server the operator started (`cargo run --release -- serve`). The
//! load generator does not touch the server's database; it needs one enrolment token per user,
//! one per line in a file (blank lines and lines starting with `#` are ignored), at least one
//! per worker. Each token is used once, to enrol a new passkey held only in this process, so
//! the users are useless afterwards; use a throw-away database.
//!
//! ```text
//! for i in $(seq 1 8); do
//!   cargo run --release -- admin invite loadgen-$i | tail -n 1 | tr -d ' '
//! done > tokens.txt
//! cargo run --release -p keyplane-loadgen -- signin --url http://localhost:8080 --tokens-file tokens.txt
//! ```
//!
//! Only loopback targets are accepted: the URL's host must be `localhost`, `127.x.x.x` or
//! `::1` (`localhost` is pinned to 127.0.0.1, never resolved).
//!
//! # Phases
//!
//! 1. Set-up: invite the users (self-serve only, direct service calls) and enrol one passkey
//!    per user over HTTP; its throughput and latencies are reported.
//! 2. Warm-up: `--warmup` sign-ins, not measured.
//! 3. Measured: `--count` sign-ins spread over `--concurrency` workers, stopped early at
//!    `--duration` seconds. Closed loop by default (each worker starts its next sign-in when the
//!    previous one ends); with `--rate N`, open loop: sign-in *i* is due at start + i/N whatever
//!    happened before, and the report adds the start lag and the latency counted from the due
//!    time (so a stalled server is not hidden by workers waiting on it).
//!
//! Each worker owns its users and their authenticators, so no passkey is ever used by two
//! sign-ins at once and signature counters stay monotonic. By default the authenticators keep
//! no counter (always 0, like synced passkeys); `--counter` makes them count.
//!
//! # What is reported
//!
//! Total, failures by HTTP status and error code, throughput (successful sign-ins per second of
//! wall time), and latency p50/p90/p99/max of the full sign-in and of each step: the two HTTP
//! calls and the client-side signature. The signature is made inside the loop, so its cost is
//! measured separately and the process CPU time is reported too (self-serve on SQLite, that is
//! client and server together; PostgreSQL's own processes are not counted). `--json` prints the
//! same as one JSON document.
//!
//! # `audit-fill`
//!
//! Appends realistic audit events (a sign-in's, about 300 bytes each) to a tenant's chain
//! through the store's chain append, to measure `keyplane audit verify` over a long log; see
//! `audit_fill.rs`.
//!
//! # `policy-fill`
//!
//! Fills a tenant with users, their populations and passkeys of realistic authenticator models
//! (iCloud Keychain, Google Password Manager, YubiKey 5, Windows Hello, 1Password, ...) through
//! the store's bulk import, to measure `keyplane policy simulate` on a large tenant; see
//! `policy_fill.rs`.

mod audit_fill;
mod policy_fill;
mod stats;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use stats::{process_cpu, Errors, Samples, Summary};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "keyplane-loadgen",
    version,
    about = "HTTP load generator for Keyplane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Full passkey sign-ins (options, software signature, verify).
    Signin(SigninArgs),
    /// Append realistic audit events to a tenant's chain (through the store's append), to
    /// measure `keyplane audit verify` over a long log.
    AuditFill(audit_fill::AuditFillArgs),
    /// Fill a tenant with users, population memberships and passkeys of realistic models
    /// (through the store's bulk import), to measure `keyplane policy simulate`.
    PolicyFill(policy_fill::PolicyFillArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SelfServe {
    Sqlite,
    Postgres,
}

#[derive(Args)]
struct SigninArgs {
    /// Start an in-process server on a fresh database (postgres needs KEYPLANE_TEST_POSTGRES_URL).
    #[arg(long, value_enum, conflicts_with_all = ["url", "tokens_file"], required_unless_present = "url")]
    self_serve: Option<SelfServe>,
    /// Base URL of a running server (loopback only), e.g. http://localhost:8080.
    #[arg(long, requires = "tokens_file")]
    url: Option<String>,
    /// External mode: a file of enrolment tokens, one per line (one user per token).
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    /// Origin the authenticators report (external mode; default: the URL's origin).
    #[arg(long)]
    origin: Option<String>,
    /// Sign-ins to measure.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Concurrent workers.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Upper bound on the measured phase, in seconds (also bounds set-up and warm-up).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Open-loop pacing: start sign-ins at this many per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Users (passkeys) per worker, used in turn (self-serve mode).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    users_per_worker: u64,
    /// Sign-ins before the measured phase, not counted.
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    /// Usernameless sign-ins (discoverable credentials) instead of username-first.
    #[arg(long)]
    usernameless: bool,
    /// Authenticators keep a signature counter (default: always 0, like synced passkeys).
    #[arg(long)]
    counter: bool,
    /// Authenticators do not perform user verification (presence only, aal1).
    #[arg(long)]
    no_user_verification: bool,
    /// Self-serve: the server's database pool size (default: the server's default).
    #[arg(long)]
    max_connections: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Signin(args) => signin(args).await,
        Command::AuditFill(args) => audit_fill::run(args).await,
        Command::PolicyFill(args) => policy_fill::run(args).await,
    }
}

/// Where requests go.
struct Target {
    http: reqwest::Client,
    base: String,
}

/// An HTTP failure, as a tally key: `"401 unknown_credential"`, `"transport: timeout"`.
type Failure = String;

impl Target {
    fn new(base: &str, pin: Option<SocketAddr>, pool: usize) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(addr) = pin {
            builder = builder.resolve("localhost", addr);
        }
        Ok(Target {
            http: builder.build()?,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    async fn post(&self, path: &str, body: &Value, expect: StatusCode) -> Result<Value, Failure> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| transport(&e))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status != expect {
            let code = v["error"]["code"].as_str().unwrap_or("-");
            return Err(format!("{} {code}", status.as_u16()));
        }
        Ok(v)
    }
}

fn transport(e: &reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "other"
    };
    format!("transport: {kind}")
}

/// Refuses anything but a loopback host; returns the address `localhost` is pinned to.
fn loopback_target(url: &str) -> anyhow::Result<(Url, Option<SocketAddr>)> {
    let parsed = Url::parse(url).with_context(|| format!("--url {url} is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("--url must be http or https");
    }
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| anyhow!("--url has no port"))?;
    let host = parsed.host_str().unwrap_or_default();
    let pin = if host.eq_ignore_ascii_case("localhost") {
        Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    } else {
        let ip: Option<IpAddr> = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok();
        if !ip.is_some_and(|ip| ip.is_loopback()) {
            bail!(
                "refusing {url}: the load generator only targets loopback addresses \
                 (localhost, 127.x.x.x, ::1)"
            );
        }
        None
    };
    Ok((parsed, pin))
}

/// One user and the authenticator holding their passkey.
struct Identity {
    auth: SoftAuthenticator,
    /// Learnt from the registration options (`publicKey.user.name`).
    username: String,
    token: String,
}

#[derive(Default)]
struct PhaseResult {
    ok: u64,
    errors: Errors,
    full: Samples,
    first: Samples,
    authenticator: Samples,
    second: Samples,
    /// Open loop only: how late each sign-in started, and its latency counted from its due time.
    lag: Samples,
    from_due: Samples,
}

impl PhaseResult {
    fn merge(&mut self, o: PhaseResult) {
        self.ok += o.ok;
        self.errors.merge(o.errors);
        self.full.extend(o.full);
        self.first.extend(o.first);
        self.authenticator.extend(o.authenticator);
        self.second.extend(o.second);
        self.lag.extend(o.lag);
        self.from_due.extend(o.from_due);
    }
}

/// Enrols each identity's passkey with its token.
async fn enrol_worker(target: Arc<Target>, mut ids: Vec<Identity>) -> (Vec<Identity>, PhaseResult) {
    let mut r = PhaseResult::default();
    for id in &mut ids {
        let t0 = Instant::now();
        let options = match target
            .post(
                "/api/v1/registration/options",
                &json!({ "enrolment_token": id.token }),
                StatusCode::OK,
            )
            .await
        {
            Ok(v) => v,
            Err(e) => {
                r.errors.add(format!("registration options: {e}"));
                continue;
            }
        };
        let t1 = Instant::now();
        id.username = options["publicKey"]["user"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let credential = match id.auth.register(&options["publicKey"]).await {
            Ok(c) => c,
            Err(_) => {
                r.errors.add("authenticator".into());
                continue;
            }
        };
        let t2 = Instant::now();
        let verify = target
            .post(
                "/api/v1/registration/verify",
                &json!({ "ceremony": options["ceremony"], "credential": credential }),
                StatusCode::CREATED,
            )
            .await;
        let t3 = Instant::now();
        if let Err(e) = verify {
            r.errors.add(format!("registration verify: {e}"));
            continue;
        }
        r.ok += 1;
        r.first.push(t1 - t0);
        r.authenticator.push(t2 - t1);
        r.second.push(t3 - t2);
        r.full.push(t3 - t0);
    }
    (ids, r)
}

/// What the sign-in workers share.
struct Plan {
    count: u64,
    rate: Option<f64>,
    start: tokio::time::Instant,
    deadline: tokio::time::Instant,
    next: AtomicU64,
    stop: Arc<AtomicBool>,
    usernameless: bool,
}

async fn sign_in_worker(
    target: Arc<Target>,
    mut ids: Vec<Identity>,
    plan: Arc<Plan>,
) -> (Vec<Identity>, PhaseResult) {
    let mut r = PhaseResult::default();
    let mut turn = 0usize;
    loop {
        if plan.stop.load(Ordering::Relaxed) || tokio::time::Instant::now() >= plan.deadline {
            break;
        }
        let i = plan.next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.count {
            break;
        }
        let due = match plan.rate {
            Some(rate) => {
                let due = plan.start + Duration::from_secs_f64(i as f64 / rate);
                if due >= plan.deadline {
                    break;
                }
                tokio::time::sleep_until(due).await;
                Some(due.into_std())
            }
            None => None,
        };
        let n = ids.len();
        let id = &mut ids[turn % n];
        turn += 1;

        let t0 = Instant::now();
        let body = if plan.usernameless {
            json!({})
        } else {
            json!({ "username": id.username })
        };
        let options = match target
            .post("/api/v1/authentication/options", &body, StatusCode::OK)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                r.errors.add(format!("options: {e}"));
                continue;
            }
        };
        let t1 = Instant::now();
        let assertion = match id.auth.authenticate(&options["publicKey"]).await {
            Ok(a) => a,
            Err(_) => {
                r.errors.add("authenticator".into());
                continue;
            }
        };
        let t2 = Instant::now();
        let verify = target
            .post(
                "/api/v1/authentication/verify",
                &json!({ "ceremony": options["ceremony"], "credential": assertion }),
                StatusCode::OK,
            )
            .await;
        let t3 = Instant::now();
        if let Err(e) = verify {
            r.errors.add(format!("verify: {e}"));
            continue;
        }
        r.ok += 1;
        r.first.push(t1 - t0);
        r.authenticator.push(t2 - t1);
        r.second.push(t3 - t2);
        r.full.push(t3 - t0);
        if let Some(due) = due {
            r.lag.push(t0.saturating_duration_since(due));
            r.from_due.push(t3.saturating_duration_since(due));
        }
    }
    (ids, r)
}

/// Runs `count` sign-ins over the workers; returns the identities, the result and the wall time.
async fn run_sign_ins(
    target: &Arc<Target>,
    workers: Vec<Vec<Identity>>,
    count: u64,
    rate: Option<f64>,
    limit: Duration,
    stop: &Arc<AtomicBool>,
    usernameless: bool,
) -> anyhow::Result<(Vec<Vec<Identity>>, PhaseResult, Duration)> {
    let start = tokio::time::Instant::now();
    let plan = Arc::new(Plan {
        count,
        rate,
        start,
        deadline: start + limit,
        next: AtomicU64::new(0),
        stop: stop.clone(),
        usernameless,
    });
    let handles: Vec<_> = workers
        .into_iter()
        .map(|ids| tokio::spawn(sign_in_worker(target.clone(), ids, plan.clone())))
        .collect();
    let mut back = Vec::new();
    let mut result = PhaseResult::default();
    // Requests time out after 30 s, so workers end at most that long after the deadline.
    for h in handles {
        let (ids, r) = h.await.context("a worker panicked")?;
        back.push(ids);
        result.merge(r);
    }
    Ok((back, result, start.elapsed()))
}

fn phase_json(r: &PhaseResult, wall: Duration, names: [&str; 3]) -> Value {
    let mut latency = serde_json::Map::new();
    latency.insert("full".into(), r.full.summary().json());
    latency.insert(names[0].into(), r.first.summary().json());
    latency.insert(names[1].into(), r.authenticator.summary().json());
    latency.insert(names[2].into(), r.second.summary().json());
    let mut latency = Value::Object(latency);
    if !r.lag.is_empty() {
        latency["start_lag"] = r.lag.summary().json();
        latency["full_from_due_time"] = r.from_due.summary().json();
    }
    json!({
        "ok": r.ok,
        "failed": r.errors.total(),
        "errors": r.errors.json(),
        "wall_s": wall.as_secs_f64(),
        "per_s": r.ok as f64 / wall.as_secs_f64(),
        "latency": latency,
    })
}

fn print_latencies(r: &PhaseResult, names: [&str; 4]) {
    println!("{}", Summary::header());
    println!("{}", r.full.summary().row(names[0]));
    println!("{}", r.first.summary().row(names[1]));
    println!("{}", r.authenticator.summary().row(names[2]));
    println!("{}", r.second.summary().row(names[3]));
    if !r.lag.is_empty() {
        println!("{}", r.lag.summary().row("start lag"));
        println!("{}", r.from_due.summary().row("sign-in from due time"));
    }
}

fn read_tokens(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

async fn signin(args: SigninArgs) -> anyhow::Result<()> {
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number");
        }
    }
    if args.self_serve == Some(SelfServe::Postgres)
        && keyplane_testkit::postgres_admin_url().is_none()
    {
        bail!("--self-serve postgres needs KEYPLANE_TEST_POSTGRES_URL (e.g. postgres://keyplane:keyplane@localhost/keyplane)");
    }
    let limit = Duration::from_secs(args.duration);
    let workers = args.concurrency as usize;

    // The target, and a token per user.
    let (server, target, origin, tokens, mode, invite_time) = match args.self_serve {
        Some(backend) => {
            let backend = match backend {
                SelfServe::Sqlite => Backend::Sqlite,
                SelfServe::Postgres => Backend::Postgres,
            };
            let max_connections = args.max_connections;
            let server = TestServer::builder(backend)
                .settings(|s| {
                    if let Some(n) = max_connections {
                        s.database.max_connections = n;
                    }
                    // All load comes from one address: the per-address and per-account limits
                    // would measure themselves. (Against an external server, raise them there.)
                    s.rate_limits.per_address_per_minute = 0;
                    s.rate_limits.per_account_per_minute = 0;
                })
                .start()
                .await;
            let (url, pin) = loopback_target(&server.base)?;
            let target = Target::new(url.as_str(), pin, workers)?;
            let n = args.concurrency * args.users_per_worker;
            let t = Instant::now();
            let mut tokens = Vec::new();
            for i in 0..n {
                tokens.push(server.invite(&format!("loadgen-{i}")).await);
            }
            let invite_time = t.elapsed();
            let mode = match backend {
                Backend::Sqlite => "self-serve sqlite",
                Backend::Postgres => "self-serve postgres",
            };
            let origin = server.origin();
            (
                Some(server),
                target,
                origin,
                tokens,
                mode,
                Some(invite_time),
            )
        }
        None => {
            let url = args.url.as_deref().unwrap_or_default();
            let (parsed, pin) = loopback_target(url)?;
            let tokens = read_tokens(args.tokens_file.as_ref().expect("required by clap"))?;
            if tokens.len() < workers {
                bail!(
                    "{} enrolment tokens for {workers} workers: each worker needs at least one user",
                    tokens.len()
                );
            }
            let origin = args
                .origin
                .clone()
                .unwrap_or_else(|| parsed.origin().ascii_serialization());
            let target = Target::new(parsed.as_str(), pin, workers)?;
            (None, target, origin, tokens, "external", None)
        }
    };
    let target = Arc::new(target);
    let outcome = measure(&args, &target, &origin, tokens, mode, invite_time, limit).await;
    if let Some(server) = server {
        server.shutdown().await;
    }
    outcome
}

async fn measure(
    args: &SigninArgs,
    target: &Arc<Target>,
    origin: &str,
    tokens: Vec<String>,
    mode: &str,
    invite_time: Option<Duration>,
    limit: Duration,
) -> anyhow::Result<()> {
    let workers = args.concurrency as usize;
    let users = tokens.len();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }

    // Set-up: one passkey per user; worker w owns users w, w + workers, ...
    let mut owned: Vec<Vec<Identity>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, token) in tokens.into_iter().enumerate() {
        owned[i % workers].push(Identity {
            auth: SoftAuthenticator::new(origin, !args.no_user_verification, args.counter),
            username: String::new(),
            token,
        });
    }
    let t = Instant::now();
    let handles: Vec<_> = owned
        .into_iter()
        .map(|ids| tokio::spawn(enrol_worker(target.clone(), ids)))
        .collect();
    let enrolment = tokio::time::timeout(limit, futures::future::join_all(handles))
        .await
        .map_err(|_| anyhow!("set-up took longer than --duration"))?;
    let enrol_wall = t.elapsed();
    let mut owned = Vec::new();
    let mut setup = PhaseResult::default();
    for h in enrolment {
        let (ids, r) = h.context("an enrolment worker panicked")?;
        owned.push(ids);
        setup.merge(r);
    }
    if setup.errors.total() > 0 {
        let list: Vec<String> = setup
            .errors
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        bail!("enrolment failed: {}", list.join(", "));
    }

    // Warm-up, then the measured phase.
    let (owned, warm, _) = run_sign_ins(
        target,
        owned,
        args.warmup,
        None,
        limit,
        &stop,
        args.usernameless,
    )
    .await?;
    let cpu0 = process_cpu();
    let (_owned, r, wall) = run_sign_ins(
        target,
        owned,
        args.count,
        args.rate,
        limit,
        &stop,
        args.usernameless,
    )
    .await?;
    let cpu = process_cpu().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    let auth = r.authenticator.summary();
    let auth_s = auth.sum_us as f64 / 1e6;
    let per_s = r.ok as f64 / wall.as_secs_f64();
    let cpu_per_sign_in_us = cpu.map(|c| c.as_secs_f64() * 1e6 / r.ok.max(1) as f64);
    let flow = if args.usernameless {
        "usernameless"
    } else {
        "username-first"
    };
    let pacing = match args.rate {
        Some(rate) => format!("open loop at {rate}/s"),
        None => "closed loop".to_string(),
    };

    if args.json {
        let mut setup_json = phase_json(
            &setup,
            enrol_wall,
            [
                "registration_options",
                "authenticator",
                "registration_verify",
            ],
        );
        if let Some(t) = invite_time {
            setup_json["invitations"] = json!({
                "n": users,
                "wall_s": t.as_secs_f64(),
                "per_s": users as f64 / t.as_secs_f64(),
            });
        }
        let report = json!({
            "mode": mode,
            "target": target.base,
            "flow": flow,
            "pacing": pacing,
            "rate": args.rate,
            "concurrency": workers,
            "users": users,
            "counter": args.counter,
            "user_verification": !args.no_user_verification,
            "cores": cores,
            "setup": setup_json,
            "warmup": { "ok": warm.ok, "failed": warm.errors.total() },
            "measured": phase_json(
                &r,
                wall,
                ["options", "authenticator", "verify"],
            ),
            "requested": args.count,
            "stopped_early": r.ok + r.errors.total() < args.count,
            "authenticator_s": auth_s,
            "process_cpu_s": cpu.map(|c| c.as_secs_f64()),
            "process_cpu_per_sign_in_us": cpu_per_sign_in_us,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }

    println!(
        "keyplane-loadgen signin: {mode}, {}, {workers} workers, {users} users, {flow}, {pacing}, \
         counter {}, user verification {}",
        target.base,
        if args.counter { "on" } else { "off (0)" },
        if args.no_user_verification {
            "off"
        } else {
            "on"
        },
    );
    if let Some(t) = invite_time {
        println!(
            "set-up: {users} invitations in {:.3} s ({:.0}/s, direct service calls)",
            t.as_secs_f64(),
            users as f64 / t.as_secs_f64()
        );
    }
    println!(
        "set-up: {} enrolments in {:.3} s ({:.0}/s over HTTP, {workers} workers)",
        setup.ok,
        enrol_wall.as_secs_f64(),
        setup.ok as f64 / enrol_wall.as_secs_f64()
    );
    print_latencies(
        &setup,
        [
            "enrolment",
            "registration options",
            "authenticator",
            "registration verify",
        ],
    );
    println!(
        "warm-up: {} sign-ins ({} failed), not measured",
        warm.ok,
        warm.errors.total()
    );
    let done = r.ok + r.errors.total();
    println!(
        "measured: {done} of {} sign-ins in {:.3} s{}: {} ok, {} failed",
        args.count,
        wall.as_secs_f64(),
        if done < args.count {
            " (stopped by --duration or Ctrl-C)"
        } else {
            ""
        },
        r.ok,
        r.errors.total()
    );
    println!("  throughput: {per_s:.1} sign-ins/s");
    for (k, n) in r.errors.iter() {
        println!("  error: {k} ×{n}");
    }
    print_latencies(
        &r,
        [
            "sign-in (full)",
            "options (HTTP)",
            "authenticator",
            "verify (HTTP)",
        ],
    );
    println!(
        "  client-side signing: {auth_s:.2} s in total, {:.0} µs per sign-in ({:.1}% of {cores} cores × wall time)",
        auth.mean_us,
        100.0 * auth_s / (wall.as_secs_f64() * cores as f64)
    );
    if let (Some(cpu), Some(per)) = (cpu, cpu_per_sign_in_us) {
        println!(
            "  process CPU: {:.2} s over {:.2} s wall = {:.2} of {cores} cores; {per:.0} µs per sign-in, \
             {:.0} µs without the client-side signature",
            cpu.as_secs_f64(),
            wall.as_secs_f64(),
            cpu.as_secs_f64() / wall.as_secs_f64(),
            per - auth.mean_us
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        let (_, pin) = loopback_target("http://localhost:8080").unwrap();
        assert_eq!(pin, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(loopback_target("http://127.0.0.2:80").unwrap().1, None);
        assert!(loopback_target("http://[::1]:8080").is_ok());
        assert!(loopback_target("http://LOCALHOST:8080").is_ok());
        for bad in [
            "http://example.com",
            "http://10.0.0.1:8080",
            "http://localhost.example.com",
            "http://[::2]:8080",
            "ftp://localhost",
            "not a url",
        ] {
            assert!(loopback_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "keyplane-loadgen",
            "signin",
            "--self-serve",
            "sqlite",
            "--rate",
            "500",
        ])
        .unwrap();
        let Command::Signin(a) = cli.command else {
            panic!("signin")
        };
        assert_eq!(a.rate, Some(500.0));
        assert!(Cli::try_parse_from([
            "keyplane-loadgen",
            "audit-fill",
            "--database-url",
            "sqlite:/tmp/x.db",
            "--events",
            "20000000"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["keyplane-loadgen", "signin"]).is_err());
        assert!(Cli::try_parse_from([
            "keyplane-loadgen",
            "signin",
            "--url",
            "http://localhost:8080"
        ])
        .is_err());
    }
}
