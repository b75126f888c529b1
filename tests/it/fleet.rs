//! A fleet through the real Envoy (issue 16): three `cedargate` replicas behind
//! `envoy/envoy-fleet.yaml` (its gRPC health checks, outlier detection and Check retry as
//! shipped), the real oidc-provider and the echo upstream, with steady bounded load from the
//! test itself. The replicas take their policies from a signed bundle (`policy_bundle`) served
//! over real HTTP. A replica SIGKILLed under load, a rolling restart with drain, then a new
//! bundle published under load (every replica on it within the poll interval, answers switching
//! with it), and one replica left behind: the fleet-skew alert, run by `promtool` over the series
//! the replicas really exposed, fires.
//!
//! The shipped file finds replicas through one DNS name (the headless Service: one A record per
//! pod, one port). On loopback the replicas can only differ by port, so the test's copy lists
//! three `127.0.0.1` endpoints in the same STRICT_DNS cluster; every other setting is the
//! shipped one. Each test prints what it measured (`--nocapture`); docs/operations.md quotes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bundles::{self, BundleServer, keygen, make_bundle, sha256};
use crate::stack::{Idp, Proc, free_port, node, start_envoy};
use crate::support::repo;

/// Replicas in the fleet.
const REPLICAS: usize = 3;
/// cedargate's drain period in the test: longer than the shipped health checks take to mark a
/// replica unhealthy (interval 1 s × unhealthy_threshold 2, plus jitter); the shipped
/// Kubernetes config uses 5 s.
const DRAIN_SECONDS: u64 = 3;
/// Pace of each load worker; WORKERS / PACE is the offered load (~320 requests/s).
const PACE: Duration = Duration::from_millis(25);
const WORKERS: usize = 8;
/// How often each replica polls the bundle server here (30 s by default; 1 s keeps the test
/// short, and the propagation bound scales with it).
const POLL_SECONDS: u64 = 1;
/// Replicas that trust both bundle-signing keys; the last one trusts only the first key, so it
/// refuses a bundle signed with the second and lags behind the others.
const TRUST_BOTH: usize = REPLICAS - 1;
/// The policy file the second bundle adds: Alice, allowed by the example policies, is denied.
const NO_ALICE: &str =
    "@id(\"fleet-no-alice\")\nforbid (principal == User::\"alice\", action, resource);\n";

/// What a request is and what policy says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// Alice may read orders: 200, and the upstream sees `User::"alice"`.
    Alice,
    /// Mallory may not: 403.
    Mallory,
    /// No credential: 401.
    Nobody,
}

impl Caller {
    fn expected(self) -> u16 {
        match self {
            Caller::Alice => 200,
            Caller::Mallory => 403,
            Caller::Nobody => 401,
        }
    }
}

/// One request of the load: when it was sent and answered, by whom, with what.
#[derive(Debug, Clone)]
struct Sample {
    sent: Instant,
    caller: Caller,
    /// HTTP status; 0 when the client got no answer at all.
    status: u16,
    /// For a 200: the principal the upstream received from cedargate.
    principal: Option<String>,
    /// For a status no policy gives (5xx, 0): the start of the body, which tells Envoy's
    /// fail-closed answer (empty) from an upstream failure (`upstream connect error …`).
    body: String,
}

/// A cedargate replica: its config and ports, and the running process (absent while stopped).
struct Replica {
    config: PathBuf,
    grpc: u16,
    admin: u16,
    proc: Option<Proc>,
}

impl Replica {
    fn start(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cedargate"));
        cmd.args(["serve", "-c"])
            .arg(&self.config)
            .env("RUST_LOG", "warn");
        let (proc, _) = Proc::spawn("cedargate replica", cmd, None);
        self.proc = Some(proc);
    }

    fn pid(&self) -> Option<u32> {
        pid_of(&self.config)
    }

    /// Peak resident set (VmHWM) in KiB.
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

/// The process id of the `cedargate serve -c <config>` running, found by its command line.
pub fn pid_of(config: &std::path::Path) -> Option<u32> {
    let needle = config.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains(" serve ") && cmdline.contains(&needle)).then_some(pid)
        })
}

/// Waits (deadline 20 s) until process `pid` has exited (gone, or a zombie its parent has not
/// reaped yet). Sends nothing: a second SIGTERM would cut cedargate's drain short.
pub fn wait_exit(pid: u32) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let exited = state
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'));
        if exited {
            return;
        }
        assert!(Instant::now() < until, "process {pid} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The fleet: IdP, bundle server, upstream, replicas, Envoy on the loopback variant of
/// envoy-fleet.yaml.
struct Fleet {
    /// Holds the configs, keys, bundles and Envoy's files until the fleet drops.
    dir: tempfile::TempDir,
    /// Serves the signed policy bundle every replica polls.
    bundles: BundleServer,
    /// Bundle-signing keys: every replica trusts the first, all but the last the second.
    keys: [PathBuf; 2],
    /// The IdP, kept running for the replicas' key refreshes.
    _idp: Idp,
    _upstream: Proc,
    replicas: Vec<Replica>,
    _envoy: Proc,
    listener: u16,
    envoy_admin: u16,
    http: reqwest::Client,
    /// Access tokens from the IdP: alice may read orders, mallory may not.
    alice: String,
    mallory: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// `envoy/envoy-fleet.yaml` with free loopback ports, and the DNS name of the headless Service
/// replaced by one `127.0.0.1` endpoint per replica (see the module docs for why).
fn render_fleet_envoy(listener: u16, admin: u16, grpc: &[u16], app: u16) -> String {
    let shipped = std::fs::read_to_string(repo().join("envoy/envoy-fleet.yaml")).unwrap();
    let endpoint = "        - endpoint:\n            address:\n              socket_address: { address: cedargate-headless.cedargate.svc.cluster.local, port_value: 9191 }\n";
    let replicas: String = grpc
        .iter()
        .map(|port| {
            format!(
                "        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
            )
        })
        .collect();
    let edits = [
        (endpoint.to_string(), replicas),
        (
            "socket_address: { address: 0.0.0.0, port_value: 10000 }".to_string(),
            format!("socket_address: {{ address: 127.0.0.1, port_value: {listener} }}"),
        ),
        (
            "port_value: 9901 }".to_string(),
            format!("port_value: {admin} }}"),
        ),
        (
            "socket_address: { address: app.default.svc.cluster.local, port_value: 8081 }"
                .to_string(),
            format!("socket_address: {{ address: 127.0.0.1, port_value: {app} }}"),
        ),
    ];
    let mut text = shipped;
    for (from, to) in edits {
        assert_eq!(
            text.matches(&from).count(),
            1,
            "envoy/envoy-fleet.yaml: `{from}` must occur exactly once"
        );
        text = text.replace(&from, &to);
    }
    assert!(
        !text.contains("svc.cluster.local"),
        "a cluster-only name is left"
    );
    text
}

impl Fleet {
    async fn start() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let idp = Idp::start(dir.path(), "idp", 3600);
        // The example policies as bundle r1, signed with the key every replica trusts.
        let (key_a, pub_a) = keygen(dir.path(), "a", "ed25519");
        let (key_b, pub_b) = keygen(dir.path(), "b", "es256");
        let (r1, r1_sig) = make_bundle(dir.path(), "r1", Some(&key_a), |_| {});
        let bundle_server =
            BundleServer::start(0, Arc::new(Mutex::new(bundles::Served::default())));
        bundle_server.publish(r1, Some(r1_sig));

        // Replicas first: their policy loads and key fetches overlap with the rest of the setup.
        let mut replicas: Vec<Replica> = (0..REPLICAS)
            .map(|i| {
                let (grpc, admin) = (free_port(), free_port());
                let config = dir.path().join(format!("cedargate-{i}.yaml"));
                let trusted = if i < TRUST_BOTH {
                    format!("{}, {}", pub_a.display(), pub_b.display())
                } else {
                    pub_a.display().to_string()
                };
                let bundle = format!(
                    "policy_bundle:\n  url: {}\n  public_key_files: [{trusted}]\n  cache_dir: {}\n  poll_interval_seconds: {POLL_SECONDS}\n",
                    bundle_server.url(),
                    dir.path().join(format!("bundle-cache-{i}")).display(),
                );
                std::fs::write(&config, replica_config(&idp.issuer, grpc, admin, &bundle))
                    .unwrap();
                Replica {
                    config,
                    grpc,
                    admin,
                    proc: None,
                }
            })
            .collect();
        for replica in &mut replicas {
            replica.start();
        }
        // Tokens from real authorization-code flows (node) meanwhile, and the upstream.
        let ((alice, mallory), (upstream, app_port)) = std::thread::scope(|s| {
            let alice = s.spawn(|| idp.user("alice"));
            let mallory = s.spawn(|| idp.user("mallory"));
            let mut up = node("upstream/upstream.mjs");
            up.args(["--port", "0", "--grpc-port", "0"]);
            let (upstream, line) = Proc::spawn("upstream", up, Some("upstream listening on "));
            let app_port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
            (
                (alice.join().unwrap(), mallory.join().unwrap()),
                (upstream, app_port),
            )
        });
        let http = client();
        for replica in &replicas {
            wait_ready(&http, replica.admin).await;
        }

        let (listener, envoy_admin) = (free_port(), free_port());
        let grpc: Vec<u16> = replicas.iter().map(|r| r.grpc).collect();
        let config = render_fleet_envoy(listener, envoy_admin, &grpc, app_port);
        let envoy = start_envoy(dir.path(), &config, envoy_admin);
        let fleet = Fleet {
            dir,
            bundles: bundle_server,
            keys: [key_a, key_b],
            _idp: idp,
            _upstream: upstream,
            replicas,
            _envoy: envoy,
            listener,
            envoy_admin,
            http,
            alice,
            mallory,
        };
        for i in 0..REPLICAS {
            fleet.wait_health(i, true, Duration::from_secs(15)).await;
        }
        fleet
    }

    /// Envoy's view of replica `i`: healthy, or not (any failure flag, or unknown).
    async fn envoy_healthy(&self, i: usize) -> bool {
        self.envoy_flags(i).await == "healthy"
    }

    /// Envoy's health flags for replica `i` (`healthy`, `/failed_active_hc`,
    /// `/failed_outlier_check`, …; empty when unknown).
    async fn envoy_flags(&self, i: usize) -> String {
        let url = format!("http://127.0.0.1:{}/clusters", self.envoy_admin);
        let Ok(r) = self.http.get(&url).send().await else {
            return String::new();
        };
        let text = r.text().await.unwrap_or_default();
        let prefix = format!(
            "cedargate::127.0.0.1:{}::health_flags::",
            self.replicas[i].grpc
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|flags| flags.trim().to_string())
            .unwrap_or_default()
    }

    /// Waits (deadline) until Envoy sees replica `i` as `healthy` or not; returns when.
    async fn wait_health(&self, i: usize, healthy: bool, deadline: Duration) -> Instant {
        let until = Instant::now() + deadline;
        loop {
            if self.envoy_healthy(i).await == healthy {
                return Instant::now();
            }
            assert!(
                Instant::now() < until,
                "Envoy never saw replica {i} as {}",
                if healthy { "healthy" } else { "unhealthy" }
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What Envoy saw so far: Checks that failed (fail closed), retried, and why retries
    /// stopped, as `name=value` words.
    async fn why(&self) -> Vec<String> {
        let mut stats = Vec::new();
        for stat in [
            "http.ingress_http.ext_authz.error",
            "cluster.cedargate.upstream_rq_retry",
            "cluster.cedargate.upstream_rq_retry_success",
            "cluster.cedargate.upstream_rq_retry_overflow",
            "cluster.cedargate.upstream_rq_retry_limit_exceeded",
            "cluster.cedargate.upstream_cx_destroy_remote_with_active_rq",
            "cluster.cedargate.upstream_cx_connect_fail",
            "cluster.cedargate.upstream_rq_timeout",
            "cluster.cedargate.upstream_rq_pending_failure_eject",
            "cluster.cedargate.outlier_detection.ejections_enforced_total",
            // The application side: a 503 Envoy gives when the upstream app's connection
            // breaks (not ext_authz's fail-closed answer).
            "cluster.app.upstream_cx_destroy_remote_with_active_rq",
            "cluster.app.upstream_rq_pending_failure_eject",
            "cluster.app.upstream_cx_connect_fail",
            "cluster.app.upstream_cx_idle_timeout",
        ] {
            let short = stat
                .strip_prefix("cluster.")
                .map_or(stat.rsplit_once('.').map_or(stat, |(_, s)| s), |s| s);
            stats.push(format!("{short}={}", self.envoy_stat(stat).await));
        }
        stats
    }

    /// GET `path` on replica `i`'s admin port: the body ("" when it can't be asked).
    async fn admin_get(&self, i: usize, path: &str) -> String {
        let url = format!("http://127.0.0.1:{}{path}", self.replicas[i].admin);
        match self.http.get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Every replica's `/metrics`, with the `instance` label Prometheus would give it.
    async fn scrape(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for i in 0..REPLICAS {
            let instance = format!("127.0.0.1:{}", self.replicas[i].admin);
            out.push((instance, self.admin_get(i, "/metrics").await));
        }
        out
    }

    /// Replica `i`'s `/policy` (null when it can't be read).
    async fn policy(&self, i: usize) -> Value {
        serde_json::from_str(&self.admin_get(i, "/policy").await).unwrap_or(Value::Null)
    }

    /// Waits (deadline 15 s) until every replica in `which` enforces bundle `revision` with
    /// `digest`, on `/policy` and in `cedargate_policy_bundle_info`; returns, per replica, when
    /// that was first seen, counted from `since`.
    async fn wait_bundle(
        &self,
        which: std::ops::Range<usize>,
        revision: &str,
        digest: &str,
        since: Instant,
    ) -> Vec<Duration> {
        let info =
            format!("cedargate_policy_bundle_info{{revision=\"{revision}\",digest=\"{digest}\"}} ");
        let mut seen: Vec<Option<Duration>> = vec![None; which.len()];
        let until = Instant::now() + Duration::from_secs(15);
        while seen.iter().any(Option::is_none) {
            for (slot, i) in seen.iter_mut().zip(which.clone()) {
                if slot.is_some() {
                    continue;
                }
                let p = self.policy(i).await;
                let enforced = &p["bundle"]["enforced"];
                if enforced["revision"] == revision
                    && enforced["digest"] == digest
                    && bundles::metric(&self.admin_get(i, "/metrics").await, &info) == Some(1.0)
                {
                    *slot = Some(since.elapsed());
                }
            }
            assert!(
                Instant::now() < until,
                "replicas {which:?} not all on bundle {revision}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen.into_iter().flatten().collect()
    }

    /// Envoy's histogram of Check times (ms) on the cedargate cluster, as its `/stats` prints
    /// it (`P50(interval,cumulative) …`): how close Checks came to the 0.5 s deadline.
    async fn check_times(&self) -> String {
        let url = format!(
            "http://127.0.0.1:{}/stats?filter=^cluster.cedargate.upstream_rq_time$&histogram_buckets=none",
            self.envoy_admin
        );
        let body = match self.http.get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        body.lines()
            .find_map(|l| l.strip_prefix("cluster.cedargate.upstream_rq_time: "))
            .map(|h| {
                h.split_whitespace()
                    .filter(|p| {
                        ["P50(", "P99(", "P99.9(", "P100("]
                            .iter()
                            .any(|q| p.starts_with(q))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    }

    /// Every `cluster.cedargate.*` counter and per-host counter (`/clusters`), by name.
    async fn cluster_counters(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (path, split) in [
            (
                "/stats?filter=^cluster%5C.cedargate%5C.&type=Counters",
                ": ",
            ),
            ("/clusters", "::"),
        ] {
            let url = format!("http://127.0.0.1:{}{path}", self.envoy_admin);
            let body = match self.http.get(&url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            for line in body.lines() {
                if let Some((name, value)) = line.rsplit_once(split)
                    && let Ok(value) = value.trim().parse::<u64>()
                    && (line.starts_with("cluster.cedargate.") || line.starts_with("cedargate::"))
                {
                    out.insert(name.to_string(), value);
                }
            }
        }
        out
    }

    /// An Envoy counter from its admin `/stats`.
    async fn envoy_stat(&self, name: &str) -> u64 {
        let url = format!(
            "http://127.0.0.1:{}/stats?filter=^{name}$",
            self.envoy_admin
        );
        let body = match self.http.get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The example config pointed at this fleet's IdP, ports and policy bundle (`bundle`, a
/// `policy_bundle:` block), with the drain period set and decision records off (the load's
/// statuses are the evidence here; records are tested elsewhere).
fn replica_config(issuer: &str, grpc: u16, admin: u16, bundle: &str) -> String {
    let example = std::fs::read_to_string(repo().join("cedargate.yaml")).unwrap();
    let edits = [
        ("http://127.0.0.1:9400".to_string(), issuer.to_string()),
        (
            "  grpc: 127.0.0.1:9191".to_string(),
            format!("  grpc: 127.0.0.1:{grpc}"),
        ),
        (
            "  admin: 127.0.0.1:9192    # /healthz, /readyz, /policy, /metrics\n".to_string(),
            format!("  admin: 127.0.0.1:{admin}\n  drain_seconds: {DRAIN_SECONDS}\n"),
        ),
        (
            "\npolicy_dir: policies\n".to_string(),
            format!("\n{bundle}"),
        ),
        ("output: stdout".to_string(), "output: off".to_string()),
    ];
    let mut yaml = example;
    for (from, to) in edits {
        assert_eq!(
            yaml.matches(&from).count(),
            1,
            "cedargate.yaml: `{from}` must occur exactly once"
        );
        yaml = yaml.replace(&from, &to);
    }
    yaml
}

async fn wait_ready(http: &reqwest::Client, admin: u16) {
    let url = format!("http://127.0.0.1:{admin}/readyz");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(&url).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < until, "replica on {admin} never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Steady load: WORKERS tasks, each sending one request per PACE, callers in turn.
struct Load {
    stop: Arc<AtomicBool>,
    /// Requests answered so far (any status), to wait for the load to be flowing.
    answered: Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Load {
    fn start(url: String, alice: String, mallory: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks = (0..WORKERS)
            .map(|w| {
                let (stop, url, answered) = (stop.clone(), url.clone(), answered.clone());
                let (alice, mallory) = (alice.clone(), mallory.clone());
                tokio::spawn(async move {
                    let http = client();
                    let mut tick = tokio::time::interval(PACE);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let callers = [Caller::Alice, Caller::Mallory, Caller::Nobody];
                    let mut samples = Vec::new();
                    let mut n = w;
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let caller = callers[n % callers.len()];
                        n += 1;
                        let mut request = http.get(&url);
                        match caller {
                            Caller::Alice => request = request.bearer_auth(&alice),
                            Caller::Mallory => request = request.bearer_auth(&mallory),
                            Caller::Nobody => {}
                        }
                        let sent = Instant::now();
                        let (status, principal, body) = match request.send().await {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let body = r.text().await.unwrap_or_default();
                                let principal = (status == 200)
                                    .then(|| serde_json::from_str::<Value>(&body).ok())
                                    .flatten()
                                    .and_then(|v| {
                                        v["headers"]["x-cedargate-principal"]
                                            .as_str()
                                            .map(str::to_string)
                                    });
                                let body = if status >= 500 {
                                    body.chars().take(120).collect()
                                } else {
                                    String::new()
                                };
                                (status, principal, body)
                            }
                            Err(e) => (0, None, e.to_string()),
                        };
                        samples.push(Sample {
                            sent,
                            caller,
                            status,
                            principal,
                            body,
                        });
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    samples
                })
            })
            .collect();
        Load {
            stop,
            answered,
            tasks,
        }
    }

    /// Waits (deadline 20 s) until `n` requests have been answered.
    async fn flowing(&self, n: usize) {
        let until = Instant::now() + Duration::from_secs(20);
        while self.answered.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < until, "the load never got going");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.unwrap());
        }
        all.sort_by_key(|s| s.sent);
        all
    }
}

/// Samples answered against policy: a status that is neither the policy's answer nor Envoy's
/// fail-closed 503, or a 200 whose upstream didn't get cedargate's principal for the caller.
fn against_policy(samples: &[Sample]) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| {
            let wrong_status = s.status != s.caller.expected() && s.status != 503;
            let wrong_principal =
                s.status == 200 && s.principal.as_deref() != Some("User::\"alice\"");
            wrong_status || wrong_principal
        })
        .collect()
}

fn failed(samples: &[Sample]) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| s.status != s.caller.expected())
        .collect()
}

fn rate(samples: &[Sample]) -> f64 {
    match (samples.first(), samples.last()) {
        (Some(a), Some(b)) if b.sent > a.sent => {
            samples.len() as f64 / (b.sent - a.sent).as_secs_f64()
        }
        _ => 0.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_survives_a_killed_replica_and_a_rolling_restart_through_envoy() {
    let started = Instant::now();
    let mut fleet = Fleet::start().await;
    let (alice, mallory) = (fleet.alice.clone(), fleet.mallory.clone());
    let setup = started.elapsed();
    let url = format!("http://127.0.0.1:{}/orders/1", fleet.listener);
    let retries_before = fleet
        .envoy_stat("cluster.cedargate.upstream_rq_retry")
        .await;

    // --- A replica SIGKILLed under load. ---
    let load = Load::start(url.clone(), alice.clone(), mallory.clone());
    // Steady state before the fault: at least a second, and enough answers whatever the
    // machine's load (the pace is fixed, not the rate).
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.flowing(150).await;
    let killed_at = Instant::now();
    fleet.replicas[0].proc.as_ref().unwrap().signal("KILL");
    let detected_at = fleet.wait_health(0, false, Duration::from_secs(10)).await;
    let detection = detected_at - killed_at;
    // Load on the two survivors: at least two seconds and 200 answers.
    let answered = load.answered.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.flowing(answered + 200).await;
    let kill_samples = load.finish().await;
    fleet.replicas[0].proc = None; // reap it
    let kill_stats = fleet.why().await;
    // Resident memory of the survivors, which carried the whole load (debug build).
    let rss: Vec<String> = fleet.replicas[1..]
        .iter()
        .map(|r| {
            r.peak_rss_kib()
                .map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        })
        .collect();

    let kill_failures = failed(&kill_samples);
    eprintln!(
        "fleet, kill phase: detection {:.2} s; failures (sent, after the kill): {:?}; {}",
        detection.as_secs_f64(),
        kill_failures
            .iter()
            .map(|s| format!(
                "{}{:.3}s {}",
                if s.sent < killed_at { "-" } else { "+" },
                if s.sent < killed_at {
                    (killed_at - s.sent).as_secs_f64()
                } else {
                    (s.sent - killed_at).as_secs_f64()
                },
                s.status
            ))
            .collect::<Vec<_>>(),
        kill_stats.join(" ")
    );
    let wrong = against_policy(&kill_samples);
    assert!(
        wrong.is_empty(),
        "answered against policy after a SIGKILL: {:?}",
        &wrong[..wrong.len().min(5)]
    );
    // A failure (Envoy's fail-closed 503, or no answer) only between the kill and detection,
    // give or take one Check's deadline (0.5 s) for requests already on their way (a request
    // sent just before the kill can have its Check on the dying replica).
    let window_start = killed_at - Duration::from_millis(500);
    let window_end = detected_at + Duration::from_millis(600);
    let outside: Vec<_> = kill_failures
        .iter()
        .filter(|s| s.sent < window_start || s.sent > window_end)
        .collect();
    assert!(
        outside.is_empty(),
        "failures outside the detection window ({detection:?}): {:?}",
        &outside[..outside.len().min(5)]
    );
    let error_window = kill_failures
        .last()
        .map(|s| s.sent.saturating_duration_since(killed_at));
    // ~3 s at a few hundred requests/s (less on a busy machine; the pace is fixed, not the rate).
    assert!(
        kill_samples.len() > 300,
        "too little load: {} requests",
        kill_samples.len()
    );

    // Back to three before the rolling restart.
    fleet.replicas[0].start();
    wait_ready(&fleet.http, fleet.replicas[0].admin).await;
    fleet.wait_health(0, true, Duration::from_secs(15)).await;

    // --- A rolling restart with drain: SIGTERM, wait for exit, restart, wait healthy, next. ---
    let load = Load::start(url.clone(), alice.clone(), mallory.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counters_before = fleet.cluster_counters().await;
    let rolling_started = Instant::now();
    let mut drained = Vec::new();
    let mut detections = Vec::new();
    let mut terms = Vec::new();
    for i in 0..REPLICAS {
        let pid = fleet.replicas[i].pid().unwrap();
        let term_at = Instant::now();
        terms.push(rolling_started.elapsed());
        let proc = fleet.replicas[i].proc.take().unwrap();
        proc.signal("TERM");
        // Envoy must stop sending here while the replica still answers (its drain period).
        let unhealthy_at = fleet.wait_health(i, false, Duration::from_secs(10)).await;
        detections.push((unhealthy_at - term_at, fleet.envoy_flags(i).await));
        tokio::task::block_in_place(|| wait_exit(pid));
        drained.push(term_at.elapsed());
        drop(proc);
        terms.push(rolling_started.elapsed());
        fleet.replicas[i].start();
        wait_ready(&fleet.http, fleet.replicas[i].admin).await;
        fleet.wait_health(i, true, Duration::from_secs(15)).await;
    }
    let rolling = rolling_started.elapsed();
    let counters_after = fleet.cluster_counters().await;
    let moved = |name: &str| {
        counters_after.get(name).copied().unwrap_or(0)
            - counters_before.get(name).copied().unwrap_or(0)
    };
    let per_try_timeouts = moved("cluster.cedargate.upstream_rq_per_try_timeout");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rolling_samples = load.finish().await;
    let rolling_failures = failed(&rolling_samples);
    if !rolling_failures.is_empty() {
        eprintln!(
            "fleet, rolling phase: failures at {:?} s (from its start); SIGTERMs at {:?} s; Envoy: {}",
            rolling_failures
                .iter()
                .map(|s| format!(
                    "{:.3} {} {:?}",
                    s.sent
                        .saturating_duration_since(rolling_started)
                        .as_secs_f64(),
                    s.status,
                    s.body
                ))
                .collect::<Vec<_>>(),
            terms
                .iter()
                .map(|t| format!("{:.3}", t.as_secs_f64()))
                .collect::<Vec<_>>(),
            fleet.why().await.join(" ")
        );
        eprintln!(
            "fleet, rolling phase: Envoy counters that moved: {:?}",
            counters_after
                .iter()
                .filter(|(k, _)| moved(k) > 0)
                .map(|(k, _)| format!("{k}+{}", moved(k)))
                .collect::<Vec<_>>()
        );
    }
    eprintln!(
        "fleet, rolling phase: SIGTERM → unhealthy in Envoy after {:?}; per-try timeouts \
         {per_try_timeouts}; Check times in ms (interval, cumulative): {}",
        detections,
        fleet.check_times().await
    );
    assert!(
        rolling_failures.is_empty(),
        "{} of {} requests failed during the rolling restart: {:?}",
        rolling_failures.len(),
        rolling_samples.len(),
        &rolling_failures[..rolling_failures.len().min(5)]
    );
    // Envoy waits for a slow answer instead of resetting it and asking another replica (the
    // per-try timeout it derives from the retry back-off; see envoy-fleet.yaml): retries are
    // for connections that failed, not for replicas that are busy.
    assert_eq!(
        per_try_timeouts, 0,
        "Checks reset by Envoy's per-try timeout during the rolling restart"
    );
    assert!(
        rolling_samples.len() > 1000,
        "too little load: {} requests",
        rolling_samples.len()
    );
    for d in &drained {
        assert!(
            *d >= Duration::from_secs(DRAIN_SECONDS),
            "a replica exited before its drain period: {d:?}"
        );
    }

    let retries = fleet
        .envoy_stat("cluster.cedargate.upstream_rq_retry")
        .await
        - retries_before;
    eprintln!(
        "fleet: {REPLICAS} replicas, load {:.0} req/s; SIGKILL: detected by Envoy after {:.2} s, \
         {} of {} requests failed (all fail-closed 503s{}), 0 answered against policy; \
         rolling restart with drain ({DRAIN_SECONDS} s each, {:.1} s for {REPLICAS} replicas): \
         {} of {} requests failed; Check retries by Envoy: {retries}; peak RSS of the \
         survivors: {}; setup {:.1} s, test wall time {:.1} s; Envoy after the kill: {}",
        rate(&kill_samples),
        detection.as_secs_f64(),
        kill_failures.len(),
        kill_samples.len(),
        error_window.map_or(String::new(), |w| format!(
            ", the last one sent {:.2} s after the kill",
            w.as_secs_f64()
        )),
        rolling.as_secs_f64(),
        rolling_failures.len(),
        rolling_samples.len(),
        rss.join(", "),
        setup.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        kill_stats.join(" "),
    );
    // --- A new bundle published under load: every replica on it within the poll interval. ---
    // r2 adds a forbid for Alice; r3 (the example policies again) is signed with the key the
    // last replica does not trust.
    let no_alice = |f: &Path| std::fs::write(f.join("fleet-no-alice.cedar"), NO_ALICE).unwrap();
    let (r2, r2_sig) = make_bundle(fleet.dir.path(), "r2", Some(&fleet.keys[0]), no_alice);
    let (r3, r3_sig) = make_bundle(fleet.dir.path(), "r3", Some(&fleet.keys[1]), |_| {});
    let load = Load::start(url.clone(), alice.clone(), mallory.clone());
    let load_started = Instant::now();
    load.flowing(90).await;
    let published = Instant::now();
    fleet.bundles.publish(r2.clone(), Some(r2_sig));
    let propagation = fleet
        .wait_bundle(0..REPLICAS, "r2", &sha256(&r2), published)
        .await;
    let slowest = propagation.iter().max().copied().unwrap_or_default();
    let all_on_r2 = published + slowest;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let update_samples = load.finish().await;
    // Alice: allowed before the publication, denied once every replica is on r2, either in
    // between; the others as always; nothing failed.
    let wrong: Vec<String> = update_samples
        .iter()
        .filter(|s| {
            let expected: &[u16] = match s.caller {
                Caller::Alice if s.sent < published => &[200],
                Caller::Alice if s.sent > all_on_r2 => &[403],
                Caller::Alice => &[200, 403],
                Caller::Mallory => &[403],
                Caller::Nobody => &[401],
            };
            !expected.contains(&s.status)
                || (s.status == 200 && s.principal.as_deref() != Some("User::\"alice\""))
        })
        .map(|s| {
            let at = s.sent.saturating_duration_since(published).as_secs_f64();
            format!(
                "{:?} sent {at:.3} s after publishing: {} {:?}",
                s.caller, s.status, s.body
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "answers during the bundle update (all replicas on r2 after {slowest:?}): {:?}",
        &wrong[..wrong.len().min(5)]
    );
    let alice = |from: Instant, to: Instant, status: u16| {
        update_samples
            .iter()
            .filter(|s| s.caller == Caller::Alice && s.sent >= from && s.sent <= to)
            .filter(|s| s.status == status)
            .count()
    };
    let end = Instant::now();
    let (allowed_before, denied_after) = (
        alice(load_started, published, 200),
        alice(all_on_r2, end, 403),
    );
    assert!(
        allowed_before > 10 && denied_after > 10,
        "the answers did not switch: {allowed_before} allowed before, {denied_after} denied after"
    );
    for (i, took) in propagation.iter().enumerate() {
        assert!(
            *took < Duration::from_secs(POLL_SECONDS + 2),
            "replica {i} took {took:?} to enforce r2 (poll interval {POLL_SECONDS} s)"
        );
    }

    // --- One replica lags: r3 is signed with a key it does not trust. ---
    let before = fleet.scrape().await;
    let lag_from = Instant::now();
    fleet.bundles.publish(r3.clone(), Some(r3_sig));
    let r3_took = fleet
        .wait_bundle(0..TRUST_BOTH, "r3", &sha256(&r3), lag_from)
        .await;
    let lagging = REPLICAS - 1;
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let p = fleet.policy(lagging).await;
        if p["bundle"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("which is not a trusted key"))
        {
            assert_eq!(p["bundle"]["enforced"]["revision"], "r2", "{p:#}");
            break;
        }
        assert!(
            Instant::now() < until,
            "replica {lagging} never refused r3: {p:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = fleet.scrape().await;
    let promtool = fleet_alerts_fire(fleet.dir.path(), &before, &after, &after[lagging].0);
    eprintln!(
        "fleet, bundles: r2 enforced by every replica {:.2} s after publishing (per replica: \
         {:?} s; poll interval {POLL_SECONDS} s), {} requests, 0 failed, Alice {allowed_before} \
         allowed before / {denied_after} denied after; r3 on {TRUST_BOTH} replicas after {:?} s, \
         replica {lagging} refused it and stayed on r2; promtool: {promtool}",
        slowest.as_secs_f64(),
        propagation
            .iter()
            .map(|d| (d.as_secs_f64() * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        update_samples.len(),
        r3_took
            .iter()
            .map(|d| (d.as_secs_f64() * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
    );
}

/// The metric families the bundle alerts read.
const BUNDLE_FAMILIES: [&str; 2] = [
    "cedargate_policy_bundle_info",
    "cedargate_policy_bundle_fetches_total",
];

/// The samples of [`BUNDLE_FAMILIES`] in a `/metrics` text, as series with the labels
/// Prometheus adds when it scrapes (`job`, `instance`).
fn scraped_series(text: &str, instance: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            BUNDLE_FAMILIES.contains(&name).then_some(())?;
            let scraped = format!("job=\"cedargate\",instance=\"{instance}\"");
            let labels = match labels {
                "}" => format!("{scraped}}}"),
                rest => format!("{scraped},{rest}"),
            };
            Some((format!("{name}{{{labels}"), value.to_string()))
        })
        .collect()
}

/// Runs `promtool test rules` with the shipped alert rules over what the replicas exposed:
/// `before` (every replica on one bundle) for minutes 0–4, `after` (one replica `lagging`
/// behind) from minute 5. Expects `CedargatePolicyFleetSkew` quiet while they agree and while
/// pending, firing once the skew has lasted its `for`, and `CedargatePolicyBundleRejected`
/// for the lagging replica; the expected labels and annotations are the rule's own.
fn fleet_alerts_fire(
    dir: &Path,
    before: &[(String, String)],
    after: &[(String, String)],
    lagging: &str,
) -> String {
    const SAMPLES_BEFORE: usize = 5;
    const SAMPLES: usize = 25;
    let rules_file = repo().join("deploy/prometheus/alerts.yaml");
    let rules: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&rules_file).unwrap()).unwrap();
    let rule = |name: &str, instance: &str| -> Value {
        let rule = rules["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .find(|r| r["alert"] == name)
            .unwrap_or_else(|| panic!("{name} is not in alerts.yaml"));
        let fill = |v: &Value| -> Value {
            let mut text = v.as_str().unwrap().to_string();
            text = text
                .replace("{{ $labels.job }}", "cedargate")
                .replace("{{ $labels.instance }}", instance);
            assert!(
                !text.contains("{{"),
                "{name}: a template this test can't fill: {text}"
            );
            Value::String(text)
        };
        let annotations: serde_json::Map<String, Value> = rule["annotations"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), fill(v)))
            .collect();
        let mut labels = rule["labels"].as_object().unwrap().clone();
        labels.insert("job".into(), "cedargate".into());
        if !instance.is_empty() {
            labels.insert("instance".into(), instance.into());
        }
        serde_json::json!([{ "exp_labels": labels, "exp_annotations": annotations }])
    };
    let mut series: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for (instance, text) in before {
        for (s, v) in scraped_series(text, instance) {
            series.entry(s).or_default().0 = Some(v);
        }
    }
    for (instance, text) in after {
        for (s, v) in scraped_series(text, instance) {
            series.entry(s).or_default().1 = Some(v);
        }
    }
    assert!(
        series
            .keys()
            .any(|s| s.starts_with("cedargate_policy_bundle_info{")),
        "no bundle info scraped: {series:?}"
    );
    let mut input = String::new();
    for (name, (old, new)) in &series {
        let mut values = Vec::new();
        let mut present = false;
        for minute in 0..SAMPLES {
            let value = if minute < SAMPLES_BEFORE { old } else { new };
            values.push(match value {
                Some(v) => v.clone(),
                // A series a replica stopped exposing ends with a staleness marker, as a
                // real scrape would leave it.
                None if present => "stale".to_string(),
                None => "_".to_string(),
            });
            present = value.is_some();
        }
        input.push_str(&format!(
            "      - series: '{name}'\n        values: '{}'\n",
            values.join(" ")
        ));
    }
    let none = serde_json::json!([]);
    let test = format!(
        "rule_files: ['{}']\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{input}    alert_rule_test:\n{}",
        rules_file.display(),
        [
            (4, "CedargatePolicyFleetSkew", none.clone()),
            (9, "CedargatePolicyFleetSkew", none.clone()),
            (11, "CedargatePolicyFleetSkew", rule("CedargatePolicyFleetSkew", "")),
            (4, "CedargatePolicyBundleRejected", none.clone()),
            (7, "CedargatePolicyBundleRejected", rule("CedargatePolicyBundleRejected", lagging)),
        ]
        .iter()
        .map(|(minute, name, expected)| format!(
            "      - eval_time: {minute}m\n        alertname: {name}\n        exp_alerts: {expected}\n"
        ))
        .collect::<String>()
    );
    let file = dir.join("fleet-alerts.test.yaml");
    std::fs::write(&file, &test).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("promtool (scripts/install-promtool.sh): {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool test rules:\n{said}\n{test}");
    said.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Envoy turns the Check's core `RetryPolicy` into a route one whose `per_try_timeout` is
/// `retry_back_off.max_interval`: below the Check timeout, a slow answer is reset and retried
/// elsewhere, and the reset counts against a healthy replica in outlier detection (the cause
/// of the fleet test's rolling-restart 503s). Both shipped copies keep it at the timeout or
/// above.
#[test]
fn the_check_retry_never_cuts_an_answer_short() {
    let seconds = |v: &Value| -> f64 {
        v.as_str()
            .and_then(|s| s.strip_suffix('s'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a duration: {v}"))
    };
    for file in [
        "envoy/envoy-fleet.yaml",
        "deploy/kubernetes/overlays/fleet/envoy-fleet.yaml",
    ] {
        let envoy: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(repo().join(file)).unwrap()).unwrap();
        let filters = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"];
        let ext_authz = filters
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "envoy.filters.http.ext_authz")
            .unwrap();
        let grpc = &ext_authz["typed_config"]["grpc_service"];
        let timeout = seconds(&grpc["timeout"]);
        let retry = &grpc["retry_policy"];
        let per_try = seconds(&retry["retry_back_off"]["max_interval"]);
        assert!(
            per_try >= timeout,
            "{file}: retry_back_off.max_interval ({per_try} s) is Envoy's per-try timeout; it must not be below the Check timeout ({timeout} s)"
        );
        assert_eq!(
            retry["retry_on"], "connect-failure,refused-stream,reset",
            "{file}: retries are for failed connections only"
        );
    }
}
