//! The Check API end to end on real sockets (tonic client → cedargate → JWKS over HTTP), with the
//! shipped example policies: allow, 403, 401, headers, spoof-overwrite, and decision records.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_user_gets_identity_headers_and_a_full_record() {
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start(&idp.issuer).await;
    let auth = user(&idp, "alice", &["admins"], "acme");
    let req = check_request(
        "orders",
        "GET",
        "/orders/42?limit=5",
        &[
            ("authorization", &auth),
            ("x-cedargate-principal", "User::\"root\""),
            ("cookie", "session=supersecretcookie"),
            ("user-agent", "curl/8"),
            ("x-request-id", "req-allow-1"),
        ],
    );
    let raw = gate.client.check(req).await.unwrap().into_inner();
    // The identity headers overwrite whatever the client sent.
    let Some(HttpResponse::OkResponse(ok)) = &raw.http_response else {
        panic!("expected OK, got {raw:?}");
    };
    for h in &ok.headers {
        assert_eq!(
            h.append_action, 2,
            "{:?} must be OVERWRITE_IF_EXISTS_OR_ADD",
            h.header
        );
    }
    let answer = Answer::from(raw);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.grpc_code, 0);
    assert_eq!(answer.headers["x-cedargate-principal"], r#"User::"alice""#);
    let id = answer.decision_id().to_string();

    let r = gate.record(&id).await;
    assert_eq!(r["v"], 1);
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["status"], 200);
    assert_eq!(r["reason"], "allow");
    assert_eq!(r["mode"], "enforce");
    assert_eq!(r["request_id"], "req-allow-1");
    assert_eq!(r["principal"], r#"User::"alice""#);
    assert_eq!(r["action"], r#"Action::"GET /orders/{id}""#);
    assert_eq!(r["resource"], r#"Service::"orders""#);
    assert_eq!(
        r["policies"],
        json!([
            {"id": "admins-everything", "reason": "admins may do anything on every service"},
            {"id": "staff-read-orders", "reason": "staff may list and read orders"},
        ]),
        "admins are staff through the group hierarchy in entities.json"
    );
    assert_eq!(r["token"]["sub"], "alice");
    assert_eq!(r["token"]["iss"], idp.issuer);
    assert_eq!(r["token"]["issuer"], "demo-idp");
    assert!(r["token"]["jti"].as_str().unwrap().starts_with("jti-alice"));
    assert_eq!(r["token"]["hash"].as_str().unwrap().len(), 16);
    assert_eq!(r["source_ip"], "127.0.0.1");
    assert!(r["latency_us"].as_u64().is_some());
    assert_eq!(r["policy_version"].as_str().unwrap().len(), 16);
    assert_eq!(r["cedar"]["context"]["request"]["params"]["id"], "42");
    assert_eq!(r["cedar"]["context"]["request"]["query"]["limit"], "5");
    assert_eq!(
        r["cedar"]["context"]["request"]["headers"],
        json!({"user-agent": "curl/8"})
    );
    assert_eq!(
        r["cedar"]["context"]["token"]["scopes"],
        json!(["orders:read", "orders:write"])
    );
    let log = gate.log_bytes();
    assert!(!log.contains("supersecretcookie"), "cookie leaked");
    assert!(
        !log.contains(auth.trim_start_matches("Bearer ")),
        "token leaked"
    );

    // Second use of the same token is served from the cache.
    let again = gate
        .check(check_request(
            "orders",
            "GET",
            "/orders/42",
            &[("authorization", &auth)],
        ))
        .await;
    assert_eq!(
        gate.record(again.decision_id()).await["token"]["cached"],
        true
    );
}

/// (who, service, method, path, status, reason, deciding policy ids)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u16,
    &'static str,
    Vec<&'static str>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_policies_decide_as_documented() {
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start(&idp.issuer).await;
    let who = |name: &str| -> Option<String> {
        match name {
            "alice" => Some(user(&idp, "alice", &["admins"], "acme")),
            "bob" => Some(user(&idp, "bob", &["staff"], "acme")),
            "carol" => Some(user(&idp, "carol", &["staff"], "globex")),
            "mallory" => Some(user(&idp, "mallory", &[], "acme")),
            "orders-service" => Some(service(&idp, "orders-service", "orders:read orders:write")),
            "orders-service-readonly" => Some(service(&idp, "orders-service", "orders:read")),
            "reporting-service" => Some(service(&idp, "reporting-service", "reports:read")),
            _ => None,
        }
    };
    let cases: Vec<Case> = vec![
        (
            "alice",
            "orders",
            "DELETE",
            "/orders/1",
            200,
            "allow",
            vec!["admins-everything"],
        ),
        (
            "alice",
            "payments",
            "POST",
            "/payments",
            200,
            "allow",
            vec!["admins-everything"],
        ),
        (
            "bob",
            "orders",
            "GET",
            "/orders",
            200,
            "allow",
            vec!["staff-read-orders"],
        ),
        (
            "bob",
            "orders",
            "DELETE",
            "/orders/1",
            403,
            "no_permit",
            vec![],
        ),
        (
            "bob",
            "orders",
            "GET",
            "/tenants/acme/orders/7",
            200,
            "allow",
            vec!["staff-own-tenant-orders"],
        ),
        (
            "bob",
            "orders",
            "GET",
            "/tenants/globex/orders/7",
            403,
            "no_permit",
            vec![],
        ),
        (
            "carol",
            "payments",
            "GET",
            "/payments/9",
            403,
            "forbid",
            vec!["suspended-tenant-payments"],
        ),
        (
            "bob",
            "payments",
            "GET",
            "/payments/9",
            200,
            "allow",
            vec!["staff-read-payments"],
        ),
        (
            "mallory",
            "orders",
            "GET",
            "/orders/1",
            403,
            "no_permit",
            vec![],
        ),
        (
            "mallory",
            "chat",
            "GET",
            "/chat/ws",
            403,
            "no_permit",
            vec![],
        ),
        (
            "bob",
            "chat",
            "GET",
            "/chat/ws",
            200,
            "allow",
            vec!["staff-chat"],
        ),
        (
            "anonymous",
            "orders",
            "GET",
            "/orders/status",
            200,
            "allow",
            vec!["public-order-status"],
        ),
        (
            "anonymous",
            "orders",
            "GET",
            "/orders/1",
            401,
            "no_permit",
            vec![],
        ),
        (
            "anonymous",
            "orders",
            "GET",
            "/nowhere",
            401,
            "no_route",
            vec![],
        ),
        ("bob", "orders", "GET", "/nowhere", 403, "no_route", vec![]),
        (
            "orders-service",
            "payments",
            "POST",
            "/payments",
            200,
            "allow",
            vec!["orders-service-creates-payments"],
        ),
        (
            "orders-service-readonly",
            "payments",
            "POST",
            "/payments",
            403,
            "no_permit",
            vec![],
        ),
        (
            "orders-service",
            "orders",
            "GET",
            "/orders/1",
            403,
            "no_permit",
            vec![],
        ),
        (
            "reporting-service",
            "reports",
            "GET",
            "/reports/daily",
            200,
            "allow",
            vec!["reporting-service-reads-orders"],
        ),
        (
            "reporting-service",
            "orders",
            "DELETE",
            "/orders/1",
            403,
            "forbid",
            vec!["deletes-need-a-user"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, svc, method, path, status, reason, policies) in &cases {
        let auth = who(name);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let answer = gate.check(check_request(svc, method, path, &headers)).await;
        let r = gate.record(answer.decision_id()).await;
        let got: Vec<&str> = r["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        if answer.status != *status || r["reason"] != *reason || got != *policies {
            failures.push(format!(
                "{name} {method} {svc}{path}: want {status} {reason} {policies:?}, got {} {} {got:?}",
                answer.status, r["reason"]
            ));
        }
        if answer.status == 403 {
            let body: Value = serde_json::from_str(&answer.body).unwrap();
            assert_eq!(
                body,
                json!({"error": "forbidden", "status": 403, "decision_id": answer.decision_id()})
            );
            assert_eq!(answer.headers["content-type"], "application/json");
            assert_eq!(answer.grpc_code, 7);
        }
        if answer.status == 401 && *name == "anonymous" {
            assert_eq!(
                answer.headers["www-authenticate"],
                r#"Bearer realm="cedargate""#
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_decided_on_service_and_method() {
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start(&idp.issuer).await;
    let bob = user(&idp, "bob", &["staff"], "acme");
    for (method, status) in [("Check", 200), ("Watch", 403)] {
        let path = format!("/grpc.health.v1.Health/{method}");
        let answer = gate
            .check(check_request(
                "health",
                "POST",
                &path,
                &[
                    ("authorization", &bob),
                    ("content-type", "application/grpc"),
                ],
            ))
            .await;
        assert_eq!(answer.status, status, "{method}");
        let r = gate.record(answer.decision_id()).await;
        assert_eq!(
            r["cedar"]["context"]["grpc"],
            json!({"service": "grpc.health.v1.Health", "method": method})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_serves_then_drains_on_shutdown() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start(&idp.issuer).await;
    let addr = gate.running.as_ref().unwrap().grpc_addr;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: "envoy.service.auth.v3.Authorization".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, 1, "SERVING");
    gate.running.take().unwrap().shutdown().await;
    // New connections are refused once drained.
    assert!(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_denied_before_anything_else() {
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start(&idp.issuer).await;
    let big = "x".repeat(70_000);
    let answer = gate
        .check(check_request(
            "orders",
            "GET",
            "/orders/status",
            &[("x-big", &big)],
        ))
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(
        gate.record(answer.decision_id()).await["reason"],
        "headers_too_large"
    );
}

/// Overload: beyond `limits.max_concurrent_checks` in flight on one connection, Checks are shed
/// at once with RESOURCE_EXHAUSTED (Envoy then fails closed) instead of queueing without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_beyond_the_concurrency_limit_are_shed_not_queued() {
    let idp = FakeIdp::start().await;
    let gate = Gate::start_with(&idp.issuer, |yaml| {
        yaml.replace("max_concurrent_checks: 256", "max_concurrent_checks: 1")
    })
    .await;
    // Unknown-kid tokens hold a Check for a while (the refetch wait), so they pile up.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut client = gate.client.clone();
        let t = crate::support::sign_raw(
            &json!({"alg": "ES256", "kid": format!("slow-{i}")}),
            &claims(&idp.issuer, "alice", &["admins"]),
            &crate::support::key("ec"),
            jsonwebtoken::Algorithm::ES256,
        );
        tasks.push(tokio::spawn(async move {
            let auth = bearer(&t);
            client
                .check(check_request(
                    "orders",
                    "GET",
                    "/orders/1",
                    &[("authorization", &auth)],
                ))
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }));
    }
    let mut shed = 0;
    let mut answered = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => answered += 1,
            Err(tonic::Code::ResourceExhausted) => shed += 1,
            Err(other) => panic!("unexpected status {other:?}"),
        }
    }
    assert!(
        shed > 0,
        "nothing was shed with a limit of 1 ({answered} answered)"
    );
    assert!(answered > 0, "the limit must still let Checks through");
}
