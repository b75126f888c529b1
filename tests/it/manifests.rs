//! The deployment files as shipped, checked offline (issue 16): `deploy/kubernetes/` rendered by
//! the real `kubectl kustomize` and validated by `kubernetes-validate` against the Kubernetes
//! schemas (both installed by `scripts/install-kube-tools.sh`), then read for what the schemas
//! can't say (replicas, probes, drain timing, security context, the copies kept in step); and
//! the Dockerfile and docker-compose.yml, which no Docker engine here can run, read for the same.
//!
//! A missing tool is a failure with the command to fix it, not a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::repo;

/// `kubernetes-validate`'s install folder: `.tools/kube`, or `CEDARGATE_KUBE_TOOLS` (a folder
/// with the same layout) for a checkout whose `.tools` is shared.
fn kube_tools() -> PathBuf {
    let dir = std::env::var_os("CEDARGATE_KUBE_TOOLS")
        .map_or_else(|| repo().join(".tools/kube"), PathBuf::from);
    assert!(
        dir.join("bin/kubernetes-validate").is_file(),
        "kubernetes-validate is not installed in {}: run scripts/install-kube-tools.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// `kubectl kustomize DIR`: the rendered manifests.
fn kustomize(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join(dir))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run kubectl ({e}): run scripts/install-kube-tools.sh (scripts/test.sh does)"
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `kubernetes-validate --strict` on `file`: (success, output).
fn kubernetes_validate(file: &Path) -> (bool, String) {
    let tools = kube_tools();
    let out = Command::new(tools.join("bin/kubernetes-validate"))
        .arg("--strict")
        .arg(file)
        .env("PYTHONPATH", &tools)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(name))
        })
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

#[test]
fn kubernetes_manifests_render_and_validate_offline() {
    let dir = tempfile::tempdir().unwrap();
    for overlay in ["deploy/kubernetes/base", "deploy/kubernetes/overlays/fleet"] {
        let rendered = kustomize(overlay);
        let file = dir.path().join("rendered.yaml");
        std::fs::write(&file, &rendered).unwrap();
        let (ok, report) = kubernetes_validate(&file);
        assert!(ok, "{overlay} does not validate:\n{report}");
        let docs = documents(&rendered);
        let passed = report.matches("passed for resource").count();
        assert_eq!(
            passed,
            docs.len(),
            "{overlay}: every resource must be validated:\n{report}"
        );
        assert!(!report.contains("WARN"), "{overlay}:\n{report}");
    }

    // The validator is live: the same Deployment with a field of the wrong type is refused.
    let rendered = kustomize("deploy/kubernetes/overlays/fleet");
    let broken = rendered.replacen("replicas: 3", "replicas: three", 1);
    assert_ne!(broken, rendered);
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let (ok, report) = kubernetes_validate(&file);
    assert!(
        !ok,
        "kubernetes-validate accepted a broken Deployment:\n{report}"
    );
}

/// What the schemas can't check: the fleet as the issue asks for it.
#[test]
fn fleet_overlay_is_a_safe_multi_replica_deployment() {
    let docs = documents(&kustomize("deploy/kubernetes/overlays/fleet"));
    let deployment = find(&docs, "Deployment", "cedargate");
    let spec = &deployment["spec"];
    assert!(
        spec["replicas"].as_u64().unwrap() >= 2,
        "at least 2 replicas"
    );
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];

    // Probes on the admin port: liveness and startup on /healthz, readiness on /readyz.
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    let admin_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap()["containerPort"]
        .as_u64()
        .unwrap();

    // Security: non-root by number, read-only root, no escalation, no capabilities.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(pod["automountServiceAccountToken"], false);
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "resources.{kind}.{resource}"
            );
        }
    }

    // The config the pods mount: valid, admin port reachable by the kubelet, and a drain that
    // outlasts Envoy's health checks and fits in the grace period.
    let config_map = find(&docs, "ConfigMap", "cedargate-config");
    let yaml = config_map["data"]["cedargate.yaml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cedargate.yaml");
    std::fs::write(&file, yaml).unwrap();
    let config = cedargate_core::config::Config::load(&file)
        .unwrap_or_else(|e| panic!("the fleet's cedargate.yaml is invalid:\n{e}"));
    assert!(
        config.admin_listen.ip().is_unspecified(),
        "kubelet probes can't reach listen.admin {}",
        config.admin_listen
    );
    assert_eq!(u64::from(config.admin_listen.port()), admin_port);
    assert!(config.grpc_listen.ip().is_unspecified());
    let envoy = std::fs::read_to_string(repo().join("envoy/envoy-fleet.yaml")).unwrap();
    let envoy: Value = serde_saphyr::from_str(&envoy).unwrap();
    let cluster = envoy["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "cedargate")
        .unwrap();
    let hc = &cluster["health_checks"][0];
    let seconds = |v: &Value| -> f64 {
        v.as_str()
            .unwrap()
            .trim_end_matches('s')
            .parse::<f64>()
            .unwrap()
    };
    let detection = (seconds(&hc["interval"]) + seconds(&hc["interval_jitter"]))
        * hc["unhealthy_threshold"].as_f64().unwrap()
        + seconds(&hc["timeout"]);
    assert!(
        config.drain.as_secs_f64() > detection,
        "listen.drain_seconds {:?} must outlast Envoy's health-check detection ({detection} s)",
        config.drain
    );
    let grace = pod["terminationGracePeriodSeconds"].as_f64().unwrap();
    // Drain, then in-flight Checks (Envoy's 0.5 s timeout), then the log flush (at most 5 s).
    assert!(
        grace > config.drain.as_secs_f64() + 0.5 + 5.0,
        "terminationGracePeriodSeconds {grace} is shorter than drain + flush"
    );
    assert_eq!(
        hc["grpc_health_check"]["service_name"],
        "envoy.service.auth.v3.Authorization"
    );
    assert_eq!(cluster["type"], "STRICT_DNS");

    // Envoy resolves the headless Service: one A record per ready pod.
    let headless = find(&docs, "Service", "cedargate-headless");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"]["address"]
        .as_str()
        .unwrap();
    assert!(
        address.starts_with("cedargate-headless.cedargate."),
        "{address}"
    );

    // Disruptions one at a time; Checks only from Envoy pods.
    assert_eq!(
        find(&docs, "PodDisruptionBudget", "cedargate")["spec"]["maxUnavailable"],
        1
    );
    let policy = find(&docs, "NetworkPolicy", "cedargate");
    let label = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap();
    let envoy_pod = &find(&docs, "Deployment", "envoy")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in label {
        assert_eq!(&envoy_pod[k], v, "Envoy pods must carry {k}={v}");
    }
}

/// kustomize reads only files under the overlay, so the overlay holds copies: they must be the
/// repository's files byte for byte.
#[test]
fn fleet_overlay_copies_match_the_repository() {
    let overlay = repo().join("deploy/kubernetes/overlays/fleet");
    assert_eq!(
        std::fs::read_to_string(overlay.join("envoy-fleet.yaml")).unwrap(),
        std::fs::read_to_string(repo().join("envoy/envoy-fleet.yaml")).unwrap(),
        "overlays/fleet/envoy-fleet.yaml differs from envoy/envoy-fleet.yaml: copy it over"
    );
    let mut compared = 0;
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let name = path.file_name().unwrap();
            let copy = overlay.join("policies").join(name);
            assert_eq!(
                std::fs::read_to_string(&copy).unwrap_or_default(),
                std::fs::read_to_string(&path).unwrap(),
                "{} differs from policies/: copy it over",
                copy.display()
            );
            compared += 1;
        }
    }
    assert!(compared >= 3, "compared only {compared} policy files");
}

/// No Docker engine here: the image and compose files are read for what the issue asks.
#[test]
fn image_is_distroless_non_root_policy_free_with_a_health_check() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let instructions: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let last_from = instructions
        .iter()
        .rev()
        .find(|l| l.starts_with("FROM "))
        .unwrap();
    assert!(
        last_from.contains("gcr.io/distroless/"),
        "runtime base: {last_from}"
    );
    let runtime: Vec<&str> = instructions
        .iter()
        .skip_while(|l| *l != last_from)
        .copied()
        .collect();
    assert!(
        !runtime
            .iter()
            .any(|l| (l.starts_with("COPY") || l.starts_with("ADD")) && l.contains("policies")),
        "the image must not carry policies"
    );
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap();
    assert!(
        user.split(':')
            .all(|id| id.parse::<u32>().is_ok_and(|n| n > 0)),
        "USER must be a numeric non-root uid:gid, got {user}"
    );
    assert!(
        runtime
            .iter()
            .any(|l| l.contains("CMD [\"/usr/local/bin/cedargate\", \"health\"]")),
        "HEALTHCHECK through `cedargate health`"
    );
    assert!(dockerfile.contains("strip"), "the binary is stripped");

    let compose: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap(),
    )
    .unwrap();
    let services = &compose["services"];
    let test = services["cedargate"]["healthcheck"]["test"].to_string();
    assert!(test.contains("\"health\""), "cedargate healthcheck: {test}");
    for (service, dependency) in [
        ("envoy", "cedargate"),
        ("envoy", "upstream"),
        ("cedargate", "idp"),
    ] {
        assert_eq!(
            services[service]["depends_on"][dependency]["condition"], "service_healthy",
            "{service} must wait for a healthy {dependency}"
        );
        assert!(
            services[dependency]["healthcheck"]["test"].is_array(),
            "{dependency} needs a healthcheck"
        );
    }
}
