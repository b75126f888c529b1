//! Workload callers of cedargate's own API over mTLS (issue 18), against the real `cedargate
//! serve` binary with `authorizer_api.tls` on its own listener, a CA and certificates made at test
//! time (rcgen), and callers' tokens from the real oidc-provider: an allowed workload gets
//! answers and its records name it; a token beside a certificate wins, as for Check; a
//! certificate of an untrusted SPIFFE trust domain is UNAUTHENTICATED `peer_untrusted`; a
//! certificate of another CA, or none when one is required, never gets past the handshake; with
//! certificates optional, token-only callers are answered and a certificate is still verified;
//! without an `mtls` section a certificate is no credential.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use cedargate_api::v1::authorizer_client::AuthorizerClient;
use cedargate_api::v1::{BatchIsAuthorizedRequest, BatchItem, Effect, IsAuthorizedRequest};

use crate::authorizer_api::Served;
use crate::stack::{Idp, free_port};
use crate::support::repo;

/// The workload the example policies let ask about documents (`callers.cedar`).
const DOCS: &str = "spiffe://cedargate.test/ns/default/sa/docs";

/// A CA that signs certificates, written as PEM files into a test folder.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A leaf certificate with `sans` and its key, as PEM.
    fn issue(&self, cn: &str, sans: Vec<SanType>) -> (String, String) {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A workload's client certificate, its SPIFFE ID as URI SAN.
    fn workload(&self, spiffe: &str) -> (String, String) {
        self.issue("workload", vec![SanType::URI(spiffe.try_into().unwrap())])
    }
}

/// The server's certificate and key and the client CA, as files; the `authorizer_api` lines
/// that serve TLS with them on `port`.
fn tls_section(dir: &Path, ca: &Ca, port: u16, require: Option<bool>) -> String {
    let (cert, key) = ca.issue(
        "cedargate",
        vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ],
    );
    let write = |name: &str, text: &str| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (cert, key, ca) = (
        write("server.crt", &cert),
        write("server.key", &key),
        write("ca.crt", &ca.pem),
    );
    let require = require.map_or(String::new(), |r| format!(", require_client_cert: {r}"));
    format!(
        "authorizer_api:\n  listen: 127.0.0.1:{port}\n  tls: {{ cert_file: {}, key_file: {}, client_ca_file: {}{require} }}\n",
        cert.display(),
        key.display(),
        ca.display()
    )
}

/// A client of the API's TLS port trusting `ca`, presenting `identity` when given.
async fn client(
    port: u16,
    ca: &Ca,
    identity: Option<&(String, String)>,
) -> Result<AuthorizerClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(AuthorizerClient::new(channel))
}

fn question(principal: &str, resource: &str) -> IsAuthorizedRequest {
    IsAuthorizedRequest {
        principal: Some(crate::authorizer_api::filter::uid(principal)),
        action: Some(crate::authorizer_api::filter::uid("Action::\"view\"")),
        resource: Some(crate::authorizer_api::filter::uid(resource)),
        context_json: String::new(),
        entities_json: String::new(),
    }
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Asks `question` on a fresh connection with `identity`: the answer, or the status of a call
/// (or connection) that failed.
async fn ask(
    port: u16,
    ca: &Ca,
    identity: Option<&(String, String)>,
    request: tonic::Request<IsAuthorizedRequest>,
) -> Result<cedargate_api::v1::Decision, tonic::Status> {
    let mut client = client(port, ca, identity)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let answer = client.is_authorized(request).await?.into_inner();
    Ok(answer.decision.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorizer_api_workload_callers_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::start(dir.path(), "idp", 3600);
    let ca = Ca::new("cedargate test CA");
    let other_ca = Ca::new("another CA");
    let docs = ca.workload(DOCS);
    let untrusted = ca.workload("spiffe://evil.test/ns/default/sa/docs");
    let foreign = other_ca.workload(DOCS);

    // Client certificates required.
    let port = free_port();
    let section = tls_section(dir.path(), &ca, port, Some(true));
    let served = Served::start(dir.path(), &idp, |y| {
        y.replace("authorizer_api:\n", &section)
    })
    .await;

    // The workload is answered: one question, and a batch.
    let d = ask(
        port,
        &ca,
        Some(&docs),
        tonic::Request::new(question("User::\"alice\"", "Document::\"plan\"")),
    )
    .await
    .unwrap();
    assert_eq!(d.effect, Effect::Allow as i32, "{d:?}");
    assert_eq!(d.policies[0].id, "owner-edits");
    let mut workload = client(port, &ca, Some(&docs)).await.unwrap();
    let batch = workload
        .batch_is_authorized(BatchIsAuthorizedRequest {
            principal: Some(crate::authorizer_api::filter::uid("User::\"bob\"")),
            items: ["plan", "handbook"]
                .iter()
                .map(|id| BatchItem {
                    action: Some(crate::authorizer_api::filter::uid("Action::\"view\"")),
                    resource: Some(crate::authorizer_api::filter::uid(&format!(
                        "Document::\"{id}\""
                    ))),
                })
                .collect(),
            context_json: String::new(),
            entities_json: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let effects: Vec<i32> = batch.results.iter().map(|d| d.effect).collect();
    assert_eq!(effects, [Effect::Deny as i32, Effect::Allow as i32]);
    // Its records name the workload as the caller, with no token facts.
    let records = served
        .wait_records(2, |r| r["api"]["batch_id"] == batch.batch_id.as_str())
        .await;
    for r in &records {
        assert_eq!(r["api"]["caller"], format!("Workload::\"{DOCS}\""));
        assert!(r["token"].is_null(), "{r}");
        assert_eq!(r["source_ip"], "127.0.0.1", "the address survives TLS: {r}");
    }
    // The policies scope the workload like any caller: documents only.
    let e = workload
        .is_authorized(question("User::\"bob\"", "Folder::\"shared\""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains(&format!("Workload::\"{DOCS}\"")),
        "{}",
        e.message()
    );

    // A token beside the certificate decides, as `Authorization` wins over a peer for Check:
    // reporting-service may not ask about documents, whatever certificate carries the call.
    let reporting = idp.service("reporting-service", "reports:read");
    let e = ask(
        port,
        &ca,
        Some(&docs),
        with_token(
            question("User::\"alice\"", "Document::\"plan\""),
            &reporting,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("Service::\"reporting-service\""),
        "{}",
        e.message()
    );
    // And a bad token is refused even with a good certificate (never a fall back to the peer).
    let e = ask(
        port,
        &ca,
        Some(&docs),
        with_token(
            question("User::\"alice\"", "Document::\"plan\""),
            "not-a-token",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // A certificate of the right CA for a trust domain `mtls` doesn't accept.
    let e = ask(
        port,
        &ca,
        Some(&untrusted),
        tonic::Request::new(question("User::\"alice\"", "Document::\"plan\"")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("peer_untrusted"), "{}", e.message());
    served
        .wait_records(1, |r| r["reason"] == "peer_untrusted" && r["status"] == 401)
        .await;

    // Another CA's certificate, and none at all, never get past the handshake; nor plain text.
    let before = served.records().len();
    let token = idp.service("orders-service", "orders:read");
    for (what, identity) in [("another CA", Some(&foreign)), ("no certificate", None)] {
        let e = ask(
            port,
            &ca,
            identity,
            with_token(question("User::\"alice\"", "Document::\"plan\""), &token),
        )
        .await
        .unwrap_err();
        assert_refused_at_handshake(&e, what);
    }
    let plain = async {
        let mut plain = AuthorizerClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
        plain
            .is_authorized(with_token(
                question("User::\"alice\"", "Document::\"plan\""),
                &token,
            ))
            .await
    };
    assert_refused_at_handshake(&plain.await.unwrap_err(), "plain text");
    // Nothing was asked, so nothing was recorded: a refused handshake reaches no handler.
    let ok = ask(
        port,
        &ca,
        Some(&docs),
        tonic::Request::new(question("User::\"alice\"", "Document::\"plan\"")),
    )
    .await
    .unwrap();
    served
        .wait_records(1, |r| r["decision_id"] == ok.decision_id.as_str())
        .await;
    assert_eq!(served.records().len(), before + 1);
    drop(served);

    // Client certificates optional (the default): a token alone is answered; a certificate
    // presented is still verified.
    let port = free_port();
    let section = tls_section(dir.path(), &ca, port, None);
    let optional = Served::start(dir.path(), &idp, |y| {
        y.replace("authorizer_api:\n", &section)
    })
    .await;
    let d = ask(
        port,
        &ca,
        None,
        with_token(question("User::\"alice\"", "Document::\"plan\""), &token),
    )
    .await
    .unwrap();
    assert_eq!(d.effect, Effect::Allow as i32);
    let e = ask(
        port,
        &ca,
        None,
        tonic::Request::new(question("User::\"alice\"", "Document::\"plan\"")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(
        e.message().contains("credentials_missing"),
        "{}",
        e.message()
    );
    let d = ask(
        port,
        &ca,
        Some(&docs),
        tonic::Request::new(question("User::\"alice\"", "Document::\"plan\"")),
    )
    .await
    .unwrap();
    assert_eq!(d.effect, Effect::Allow as i32);
    let e = ask(
        port,
        &ca,
        Some(&foreign),
        tonic::Request::new(question("User::\"alice\"", "Document::\"plan\"")),
    )
    .await
    .unwrap_err();
    assert_refused_at_handshake(&e, "another CA, certificates optional");
    drop(optional);

    // Without an `mtls` section a certificate is no credential, as for Check: nobody.
    let port = free_port();
    let section = tls_section(dir.path(), &ca, port, Some(true));
    let _served = Served::start(dir.path(), &idp, |y| {
        let without = y.replace(
            "mtls:\n  type: Workload\n  trust_domains: [cedargate.test]\n",
            "",
        );
        assert_ne!(without, y, "the example config's mtls section moved");
        without.replace("authorizer_api:\n", &section)
    })
    .await;
    let e = ask(
        port,
        &ca,
        Some(&docs),
        tonic::Request::new(question("User::\"alice\"", "Document::\"plan\"")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(
        e.message().contains("credentials_missing"),
        "{}",
        e.message()
    );
}

/// The connection was closed under the call: a transport failure (the server's TLS alert after
/// the client's certificate), never one of the handler's answers. With TLS 1.3 the client's
/// side of the handshake completes before the server judges its certificate, so the refusal
/// shows on the first call as a cancelled or unavailable connection.
fn assert_refused_at_handshake(e: &tonic::Status, what: &str) {
    assert!(
        matches!(
            e.code(),
            Code::Unavailable | Code::Cancelled | Code::Unknown | Code::Internal
        ),
        "{what}: {e:?}"
    );
}

/// A key that is not the certificate's stops `serve` with the setting named, and no key bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_the_certificates_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cedargate test CA");
    let section = tls_section(dir.path(), &ca, free_port(), None);
    let (_, other_key) = ca.issue("other", vec![]);
    std::fs::write(dir.path().join("server.key"), &other_key).unwrap();
    let (grpc, admin) = (free_port(), free_port());
    let yaml = std::fs::read_to_string(repo().join("examples/authorizer-cedargate.yaml"))
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
        .replace("authorizer_api:\n", &section);
    let config = dir.path().join("cedargate.yaml");
    std::fs::write(&config, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["serve", "-c"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("error: authorizer_api.tls: cert_file ") && stderr.contains("KeyMismatch"),
        "{stderr}"
    );
    let body: String = other_key.lines().nth(1).unwrap().to_string();
    assert!(!stderr.contains(&body), "key bytes in the error: {stderr}");
}
