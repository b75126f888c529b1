//! Properties of the route table (issue 15):
//!
//! - in-process, over the shipped `cedargate.yaml` (`unmatched_route: deny`): randomized
//!   requests from a small deterministic PRNG, judged by an oracle that reads the routes from the
//!   YAML itself and matches them with its own few lines (not `RouteTable::find`). Every request
//!   no route matches is denied `no_route` by `decision::decide`, for an admin token (which the
//!   shipped policies allow everything routed) and for an anonymous caller; every request a route
//!   matches is decided on that route (first match), so nothing unrouted is ever allowed;
//! - through the real Envoy with the shipped normalization options (`normalize_path`,
//!   `merge_slashes`, `path_with_escaped_slashes_action: REJECT_REQUEST`): tricky paths sent
//!   byte for byte on a raw socket; for each, the path in cedargate's decision record equals the
//!   path Envoy forwards (the echo upstream's, for an allow; Envoy's access log, for every
//!   request), nothing denied reaches the upstream, and nothing is allowed that no route matches.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cedargate_core::config::{Config, Unmatched};
use cedargate_core::decision;
use cedargate_core::identity::{Identity, IdentityError};
use cedargate_core::request::HttpRequest;
use cedargate_core::token::VerifiedToken;
use serde_json::{Value, json};

use crate::stack::Stack;
use crate::support::repo;

/// xorshift64*: deterministic, so a failure names a case that comes back on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A route as the YAML states it, for the oracle.
#[derive(Debug)]
struct OracleRoute {
    service: Option<String>,
    methods: Vec<String>,
    template: String,
    /// `None` for a `{param}` segment, else the literal.
    segments: Vec<Option<String>>,
}

/// The routes of the shipped `cedargate.yaml`, read from the YAML text (not through `Config`).
fn oracle_routes() -> Vec<OracleRoute> {
    let text = std::fs::read_to_string(repo().join("cedargate.yaml")).unwrap();
    let yaml: Value = serde_saphyr::from_str(&text).unwrap();
    yaml["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
            for k in &keys {
                assert!(
                    ["service", "methods", "path", "resource", "action"].contains(&k.as_str()),
                    "the oracle does not know route field `{k}`: teach it"
                );
            }
            let template = r["path"].as_str().unwrap().to_string();
            let body = template.strip_prefix('/').unwrap();
            let segments = if body.is_empty() {
                Vec::new()
            } else {
                body.split('/')
                    .map(|s| {
                        if s.starts_with('{') {
                            assert!(
                                s.ends_with('}') && !s.contains('*'),
                                "the oracle only knows whole-segment {{param}}s: {template}"
                            );
                            None
                        } else {
                            assert!(!s.contains('{'), "{template}");
                            Some(s.to_string())
                        }
                    })
                    .collect()
            };
            OracleRoute {
                service: r["service"].as_str().map(str::to_string),
                methods: r["methods"]
                    .as_array()
                    .map(|m| m.iter().map(|m| m.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default(),
                template,
                segments,
            }
        })
        .collect()
}

/// Whether `path` has the segments of `segments`: literals equal, parameters non-empty, one
/// trailing `/` allowed.
fn path_matches(segments: &[Option<String>], path: &str) -> bool {
    let Some(body) = path.strip_prefix('/') else {
        return false;
    };
    let body = body.strip_suffix('/').unwrap_or(body);
    let parts: Vec<&str> = if body.is_empty() {
        Vec::new()
    } else {
        body.split('/').collect()
    };
    parts.len() == segments.len()
        && parts.iter().zip(segments).all(|(part, seg)| match seg {
            Some(lit) => part == lit,
            None => !part.is_empty(),
        })
}

/// The first route the oracle says matches.
fn oracle<'a>(
    routes: &'a [OracleRoute],
    service: Option<&str>,
    method: &str,
    path: &str,
) -> Option<&'a OracleRoute> {
    routes.iter().find(|r| {
        r.service.as_deref().is_none_or(|s| Some(s) == service)
            && (r.methods.is_empty() || r.methods.iter().any(|m| m == method))
            && path_matches(&r.segments, path)
    })
}

const SEGMENTS: &[&str] = &[
    "orders",
    "status",
    "tenants",
    "acme",
    "payments",
    "reports",
    "chat",
    "ws",
    "grpc.health.v1.Health",
    "Check",
    "daily",
    "1",
    "42",
    "",
    "..",
    ".",
    "%2e%2e",
    "ORDERS",
    "Orders",
    "orders;x",
    "1%2F2",
    "a b",
    "é",
    "{id}",
    "*",
];

const METHODS: &[&str] = &[
    "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "get", "Get", "delete",
];

const SERVICES: &[Option<&str>] = &[
    Some("orders"),
    Some("payments"),
    Some("reports"),
    Some("health"),
    Some("chat"),
    Some("admin"),
    Some("ORDERS"),
    None,
];

/// A random segment: from the pool, or a few random characters.
fn segment(rng: &mut Rng) -> String {
    if rng.chance(4) {
        let alphabet: Vec<char> = "abcXYZ019-_.~%;:@".chars().collect();
        (0..1 + rng.below(4))
            .map(|_| *rng.pick(&alphabet))
            .collect()
    } else {
        rng.pick(SEGMENTS).to_string()
    }
}

/// A request: half of them a route of the file with its parameters filled and often one
/// mutation (a near miss), half of them random segments.
fn request(rng: &mut Rng, routes: &[OracleRoute]) -> (Option<&'static str>, String, String) {
    let (service, method, mut parts) = if rng.chance(2) {
        let route = rng.pick(routes);
        let parts: Vec<String> = route
            .segments
            .iter()
            .map(|s| s.clone().unwrap_or_else(|| segment(rng)))
            .collect();
        let method = if route.methods.is_empty() || rng.chance(4) {
            rng.pick(METHODS).to_string()
        } else {
            rng.pick(&route.methods).clone()
        };
        let service = if rng.chance(4) {
            *rng.pick(SERVICES)
        } else {
            SERVICES
                .iter()
                .copied()
                .find(|s| *s == route.service.as_deref())
                .unwrap_or(None)
        };
        (service, method, parts)
    } else {
        let n = rng.below(6);
        let parts = (0..n).map(|_| segment(rng)).collect();
        (*rng.pick(SERVICES), rng.pick(METHODS).to_string(), parts)
    };
    if !parts.is_empty() && rng.chance(2) {
        let i = rng.below(parts.len());
        match rng.below(4) {
            0 => parts[i] = segment(rng),
            1 => parts.insert(i, segment(rng)),
            2 => {
                parts.remove(i);
            }
            _ => parts[i] = parts[i].to_uppercase(),
        }
    }
    let mut path = format!("/{}", parts.join("/"));
    match rng.below(12) {
        0 | 1 => path.push('/'),
        2 => path = format!("/{path}"),
        3 => path = path.trim_start_matches('/').to_string(),
        _ => {}
    }
    (service, method, path)
}

fn http_request(service: Option<&str>, method: &str, path: &str) -> HttpRequest {
    let mut request = HttpRequest {
        request_id: "property".into(),
        method: method.into(),
        path: path.into(),
        host: "api.example.test".into(),
        scheme: "https".into(),
        protocol: "HTTP/1.1".into(),
        ..HttpRequest::default()
    };
    if let Some(service) = service {
        request
            .context_extensions
            .insert("service".into(), service.into());
    }
    request
}

#[test]
fn nothing_the_route_table_does_not_match_is_ever_allowed() {
    let config = Config::load(&repo().join("cedargate.yaml")).unwrap();
    assert_eq!(
        config.unmatched,
        Unmatched::Deny,
        "the shipped config denies"
    );
    let policies = cedargate_core::shapes::load_checked(&config.policy_dir, &config).unwrap();
    let routes = oracle_routes();
    assert_eq!(
        routes.len(),
        9,
        "the shipped table changed: check the oracle"
    );

    let issuer = config.issuers[0].clone();
    let claims = json!({
        "iss": &*issuer.issuer, "sub": "alice", "aud": "https://api.cedargate.test",
        "exp": 4_000_000_000u64, "client_id": "webapp", "groups": ["admins"], "tenant": "acme",
    });
    let admin: Result<Identity, IdentityError> = Ok(Identity::Token {
        token: Arc::new(VerifiedToken::from_claims(
            issuer,
            claims.as_object().unwrap().clone(),
        )),
        cached: false,
    });
    let anonymous: Result<Identity, IdentityError> = Ok(Identity::Anonymous);

    let mut rng = Rng(0x5eed_cafe_f00d_0015);
    let (mut matched, mut unmatched) = (0, 0);
    let mut routes_hit = std::collections::BTreeSet::new();
    let now = SystemTime::now();
    for case in 0..3_000 {
        let (service, method, path) = request(&mut rng, &routes);
        let request = http_request(service, &method, &path);
        let expected = oracle(&routes, service, &method, &path);
        let what = format!("case {case}: service {service:?} {method} {path:?}");
        for (who, identity) in [("admin", &admin), ("anonymous", &anonymous)] {
            let d = decision::decide(&config, &policies, &request, identity, now);
            match expected {
                None => {
                    assert!(!d.allowed, "{who} allowed on no route: {what}");
                    assert_eq!(d.reason, "no_route", "{who}: {what}");
                    assert_eq!(d.route, None, "{who}: {what}");
                }
                Some(route) => {
                    assert_ne!(d.reason, "no_route", "{who}: {what} matches {route:?}");
                    assert_eq!(
                        d.route.as_deref(),
                        Some(route.template.as_str()),
                        "{who}: {what}: decided on another route than the first that matches"
                    );
                    if who == "admin" {
                        // `admins-everything`: the admin is allowed whatever is routed.
                        assert!(d.allowed, "admin denied {}: {what}", d.reason);
                    } else if d.allowed {
                        assert_eq!(route.template, "/orders/status", "{what}");
                    }
                }
            }
        }
        match expected {
            Some(route) => {
                matched += 1;
                routes_hit.insert(route.template.clone());
            }
            None => unmatched += 1,
        }
    }
    println!("{matched} routed, {unmatched} unrouted requests");
    assert!(
        matched > 300 && unmatched > 300,
        "the generator must produce both: {matched} routed, {unmatched} unrouted"
    );
    assert_eq!(
        routes_hit.len(),
        routes.len(),
        "every route matched at least once: {routes_hit:?}"
    );
}

#[test]
fn the_oracle_matches_as_documented() {
    let seg = |t: &str| -> Vec<Option<String>> {
        t.trim_start_matches('/')
            .split('/')
            .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
            .collect()
    };
    for (template, path, want) in [
        ("/orders/{id}", "/orders/1", true),
        ("/orders/{id}", "/orders/1/", true),
        ("/orders/{id}", "/orders//", false),
        ("/orders/{id}", "/orders/", false),
        ("/orders/{id}", "orders/1", false),
        ("/orders/{id}", "//orders/1", false),
        ("/orders/{id}", "/orders/1/2", false),
        ("/orders/status", "/orders/status", true),
        ("/orders/status", "/ORDERS/status", false),
    ] {
        assert_eq!(
            path_matches(&seg(template), path),
            want,
            "{template} {path}"
        );
    }
}

/// One answer read off a raw HTTP/1.1 connection.
struct Raw {
    status: u16,
    body: String,
}

/// Sends `GET <path>` byte for byte (no client-side normalization) and reads the answer.
fn raw_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req =
        format!("GET {path} HTTP/1.1\r\nHost: api.cedargate.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {path:?}: {out:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        crate::support::dechunk(body)
    } else {
        body.to_string()
    };
    Raw { status, body }
}

/// The shipped Envoy config plus an access log naming, per probe, the `:path` Envoy forwards
/// (after normalization), the response code and the upstream it reached (`-` for none).
fn with_access_log(envoy: String, dir: &Path) -> String {
    for option in [
        "normalize_path: true",
        "merge_slashes: true",
        "path_with_escaped_slashes_action: REJECT_REQUEST",
    ] {
        assert!(envoy.contains(option), "envoy/envoy.yaml lost `{option}`");
    }
    let anchor = "          stat_prefix: ingress_http\n";
    assert!(envoy.contains(anchor));
    let log = dir.join("access.log");
    envoy.replace(
        anchor,
        &format!(
            r#"{anchor}          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {}
              log_format:
                text_format_source:
                  inline_string: "%REQ(X-PROBE)% %RESPONSE_CODE% %UPSTREAM_HOST% %REQ(:PATH)%\n"
"#,
            log.display()
        ),
    )
}

/// Envoy's access log, once it holds `last` (Envoy writes it in order, with one worker, and
/// flushes it on a timer): probe id → (response code, upstream host, forwarded path).
fn access_log(dir: &Path, last: &str) -> HashMap<String, (String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
        let lines: HashMap<String, (String, String, String)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(4, ' ');
                let probe = parts.next()?.to_string();
                let code = parts.next()?.to_string();
                let upstream = parts.next()?.to_string();
                let path = parts.next().unwrap_or("").to_string();
                Some((probe, (code, upstream, path)))
            })
            .collect();
        if lines.contains_key(last) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no access-log line for {last}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The path a record says cedargate authorized: the Cedar request's, or the request line of a
/// Check refused before one was built.
fn recorded_path(record: &Value) -> String {
    record["cedar"]["context"]["request"]["path"]
        .as_str()
        .or_else(|| record["request"]["path"].as_str())
        .unwrap_or_else(|| panic!("no path in {record}"))
        .to_string()
}

const TRICKY: &[&str] = &[
    "/orders/1",
    "/orders/status",
    "/orders/../admin",
    "/orders/../payments/1",
    "//orders/1",
    "/orders//1",
    "/orders/./1",
    "/orders/1/.",
    "/orders/1/..",
    "/orders/%2e%2e/x",
    "/orders/%2E%2E/payments/1",
    "/orders/%2e/1",
    "/orders/%31",
    "/orders/1%2F2",
    "/orders/1%2f..%2fadmin",
    "/orders/1%5C2",
    "/orders/1;x",
    "/orders;x/1",
    "/ORDERS/1",
    "/Orders/status",
    "/orders/1/",
    "/orders/status/",
    "/orders/1?x=/admin",
    "/orders/1?x=../../admin&limit=5",
    "/orders/1#f",
    "/orders/1#/../../admin",
    "/public/../orders/1",
    "/public/..%2Forders/1",
    "/public/%2e%2e/orders/status",
    "/orders/1%00",
    "/orders/1%20",
    "/orders/%7Bid%7D",
    "/payments/1/../../orders/1",
    "/reports/daily/..",
    "/tenants/acme/orders/1",
    "/orders/tenants/acme/orders/1",
    "/chat/ws/../../orders/1",
    "/nowhere",
    "/",
];

#[test]
fn the_path_cedargate_authorizes_is_the_path_the_upstream_receives() {
    let stack = Stack::start_with_envoy(|yaml| yaml, with_access_log);
    let alice = format!("Bearer {}", stack.idp.user("alice"));
    let routes = oracle_routes();
    let upstream_total = "cluster.app.upstream_rq_total";
    // Sent one by one (the upstream counter says whether each reached the upstream), judged
    // once Envoy's access log has them all.
    struct Sent {
        probe: String,
        who: &'static str,
        path: &'static str,
        answer: Raw,
        reached: u64,
    }
    let mut sent = Vec::new();
    for path in TRICKY {
        for (who, auth) in [("alice", Some(alice.as_str())), ("anonymous", None)] {
            let probe = format!("p{}", sent.len() + 1);
            let mut headers = vec![("x-probe", probe.as_str())];
            if let Some(auth) = auth {
                headers.push(("authorization", auth));
            }
            let before = stack.envoy_stat(upstream_total);
            let answer = raw_get(stack.listener, path, &headers);
            let reached = stack.envoy_stat(upstream_total) - before;
            sent.push(Sent {
                probe,
                who,
                path,
                answer,
                reached,
            });
        }
    }
    // A last, plain request: once its line is in the log, so are all before it.
    let sentinel = raw_get(stack.listener, "/orders/status", &[("x-probe", "sentinel")]);
    assert_eq!(sentinel.status, 200);
    let log = access_log(stack.dir.path(), "sentinel");

    let (mut allowed, mut denied, mut refused_by_envoy, mut unchecked_public) = (0, 0, 0, 0);
    for Sent {
        probe,
        who,
        path,
        answer,
        reached,
    } in sent
    {
        let (code, upstream, forwarded) = log.get(&probe).cloned().unwrap_or_else(|| {
            // Refused by Envoy's codec before its headers were read: no probe id.
            ("-".into(), "-".into(), String::new())
        });
        let what = format!(
            "{who} GET {path:?}: answered {}, Envoy forwarded path {forwarded:?} (code {code}, upstream {upstream})",
            answer.status
        );
        let forwarded_path = forwarded.split('?').next().unwrap().to_string();

        let body: Option<Value> = serde_json::from_str(&answer.body).ok();
        let decision_id = body.as_ref().and_then(|b| {
            b["headers"]["x-cedargate-decision-id"]
                .as_str()
                .or_else(|| b["decision_id"].as_str())
                .map(str::to_string)
        });
        let Some(decision_id) = decision_id else {
            if reached == 1 {
                // Only the route with ext_authz switched off (`/public`) is forwarded
                // unchecked, and only a path that really is under it.
                assert!(
                    forwarded_path.starts_with("/public/")
                        && !forwarded_path.contains("..")
                        && !forwarded_path.to_ascii_lowercase().contains("%2e"),
                    "{what}: reached the upstream without a decision"
                );
                unchecked_public += 1;
                continue;
            }
            // Refused by Envoy before ext_authz: nothing reached the upstream.
            assert_ne!(answer.status, 200, "{what}");
            assert_eq!(reached, 0, "{what}");
            assert_eq!(upstream, "-", "{what}");
            refused_by_envoy += 1;
            continue;
        };
        let record = stack.record(&decision_id);
        let authorized = recorded_path(&record);
        assert_eq!(
            authorized, forwarded_path,
            "{what}: cedargate authorized another path than Envoy forwards"
        );
        if record["decision"] == "allow" {
            allowed += 1;
            let echo = body.unwrap();
            assert_eq!(answer.status, 200, "{what}");
            assert_eq!(reached, 1, "{what}");
            let received = echo["path"].as_str().unwrap();
            assert_eq!(received, forwarded, "{what}: the upstream got another path");
            assert_eq!(
                received.split('?').next().unwrap(),
                authorized,
                "{what}: the upstream got another path than was authorized"
            );
            // Allowed only on a route that matches what the upstream received.
            let template = record["route"].as_str().unwrap();
            let route = routes.iter().find(|r| r.template == template).unwrap();
            assert!(
                path_matches(&route.segments, &authorized),
                "{what}: allowed on {template}"
            );
            if who == "anonymous" {
                assert_eq!(template, "/orders/status", "{what}");
            }
        } else {
            denied += 1;
            assert_ne!(answer.status, 200, "{what}");
            assert_eq!(reached, 0, "{what}: a denied request reached the upstream");
            assert_eq!(upstream, "-", "{what}");
        }
        println!("{what}: {} {}", record["decision"], record["reason"]);
    }
    println!(
        "{allowed} allowed, {denied} denied by cedargate, {refused_by_envoy} refused by Envoy, {unchecked_public} on the unchecked /public route"
    );
    assert!(allowed >= 10 && denied >= 10 && refused_by_envoy >= 2);
}
