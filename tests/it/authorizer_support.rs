//! What the Authorizer API tests (`authorizer_api`, `authorizer_callers`, `authorizer_records`)
//! share: the example config served by the real `cedargate serve` binary (`Served`), its decision
//! records read back, the example Rust client (`filter`), and the question most of them ask
//! (may alice view the plan?). It asserts nothing about the API itself; the three modules do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::stack::{Idp, Proc, free_port};
use crate::support::repo;

#[path = "../../examples/authorizer-filter/filter.rs"]
#[allow(dead_code)]
pub(crate) mod filter;

use cedargate_api::v1::{Decision, IsAuthorizedRequest};
use filter::{Filter, uid};

/// The example config (`examples/authorizer-cedargate.yaml`) with its Check API on `grpc`, its
/// admin port on `admin`, and the example policies by absolute path.
pub(crate) fn example_config(grpc: u16, admin: u16) -> String {
    std::fs::read_to_string(repo().join("examples/authorizer-cedargate.yaml"))
        .unwrap()
        .replace("127.0.0.1:9191", &format!("127.0.0.1:{grpc}"))
        .replace("127.0.0.1:9192", &format!("127.0.0.1:{admin}"))
        .replace(
            "policy_dir: authorizer-policies",
            &format!(
                "policy_dir: {}",
                repo().join("examples/authorizer-policies").display()
            ),
        )
}

/// cedargate serving the example config with the example policies, trusting `idp`, logging
/// decisions to a file.
pub(crate) struct Served {
    _proc: Proc,
    pub(crate) grpc: u16,
    pub(crate) admin: u16,
    pub(crate) config: PathBuf,
    pub(crate) log: PathBuf,
}

impl Served {
    /// Starts it with the config passed through `edit`; returns once `/readyz` answers
    /// (deadline 30 s).
    pub(crate) async fn start(
        dir: &Path,
        idp: &Idp,
        edit: impl FnOnce(String) -> String,
    ) -> Served {
        let (grpc, admin) = (free_port(), free_port());
        let log = dir.join("decisions.log");
        let yaml = example_config(grpc, admin)
            .replace("http://127.0.0.1:9400", &idp.issuer)
            .replace(
                "output: stdout",
                &format!("output: file\n  path: {}", log.display()),
            );
        let config = dir.join("cedargate.yaml");
        std::fs::write(&config, edit(yaml)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cedargate"));
        cmd.args(["serve", "-c"])
            .arg(&config)
            .env("RUST_LOG", "warn");
        let (proc, _) = Proc::spawn("cedargate", cmd, None);
        let ready = format!("http://127.0.0.1:{admin}/readyz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = ::reqwest::get(&ready).await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "cedargate never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Served {
            _proc: proc,
            grpc,
            admin,
            config,
            log,
        }
    }

    pub(crate) fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    /// Decision records written so far.
    pub(crate) fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (deadline 5 s) until `pred` holds for `n` records, returns them.
    pub(crate) async fn wait_records(&self, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<Value> = self.records().into_iter().filter(|r| pred(r)).collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} records after 5 s",
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The raw line of the record `decision_id` (waiting for it, deadline 5 s).
    pub(crate) async fn line(&self, decision_id: &str) -> String {
        self.wait_records(1, |r| r["decision_id"] == decision_id)
            .await;
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .find(|l| l.contains(decision_id))
            .unwrap()
            .to_string()
    }
}

/// May `principal` view `resource`, with no context and no entities of the caller's.
pub(crate) fn question(principal: &str, resource: &str) -> IsAuthorizedRequest {
    IsAuthorizedRequest {
        principal: Some(uid(principal)),
        action: Some(uid("Action::\"view\"")),
        resource: Some(uid(resource)),
        context_json: String::new(),
        entities_json: String::new(),
    }
}

/// `message` with the caller's token and trace context, each when given.
pub(crate) fn request<T>(
    message: T,
    token: Option<&str>,
    traceparent: Option<&str>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    if let Some(token) = token {
        metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    if let Some(parent) = traceparent {
        metadata.insert("traceparent", parent.parse().unwrap());
    }
    request
}

/// May alice view the plan, asked through the example client.
pub(crate) async fn alice_views_plan(client: &mut Filter) -> Result<Decision, tonic::Status> {
    client
        .is_authorized(
            "User::\"alice\"",
            "Action::\"view\"",
            "Document::\"plan\"",
            &json!({}),
            &[],
        )
        .await
}
