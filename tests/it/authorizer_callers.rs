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
use cedargate_api::v1::{BatchIsAuthorizedRequest, BatchItem, Effect};

use crate::authorizer_support::filter::uid;
use crate::authorizer_support::{Served, example_config, question, request};
use crate::stack::{Idp, free_port};

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

/// cedargate serving the example config, its Authorizer API over TLS on a port of its own (the
/// port returned), the config first passed through `edit`.
async fn serve_tls(
    dir: &Path,
    idp: &Idp,
    ca: &Ca,
    require: Option<bool>,
    edit: impl FnOnce(String) -> String,
) -> (u16, Served) {
    let port = free_port();
    let section = tls_section(dir, ca, port, require);
    let served = Served::start(dir, idp, |y| edit(y).replace("authorizer_api:\n", &section)).await;
    (port, served)
}

/// How a case's call reaches the API port.
#[derive(Clone, Copy)]
enum Peer<'a> {
    /// TLS trusting the test CA, presenting this certificate (and key) when given.
    Tls(Option<&'a (String, String)>),
    /// Plain text to the TLS port.
    PlainText,
}

/// What a case's call must come to.
#[derive(Clone, Copy)]
enum Outcome {
    /// Answered Allow, decided by this policy when given.
    Allow(Option<&'static str>),
    /// Refused by the handler with this code, its message containing this text when given.
    Refused(Code, Option<&'static str>),
    /// Refused at the handshake (`assert_refused_at_handshake`).
    Handshake,
}

/// One call: may alice view the plan, asked over `peer` with `token` beside it.
#[derive(Clone, Copy)]
struct Case<'a> {
    what: &'static str,
    peer: Peer<'a>,
    token: Option<&'a str>,
    outcome: Outcome,
}

/// Asks a case's question on a fresh connection and checks what comes back against its
/// outcome; the decision, when it is answered.
async fn check(port: u16, ca: &Ca, case: &Case<'_>) -> Option<cedargate_api::v1::Decision> {
    let what = case.what;
    let request = request(
        question("User::\"alice\"", "Document::\"plan\""),
        case.token,
        None,
    );
    let answer = async {
        let connect = |e| tonic::Status::unavailable(format!("connect: {e:?}"));
        let answer = match case.peer {
            Peer::Tls(identity) => {
                let mut tls = client(port, ca, identity).await.map_err(connect)?;
                tls.is_authorized(request).await?
            }
            Peer::PlainText => {
                let mut plain = AuthorizerClient::connect(format!("http://127.0.0.1:{port}"))
                    .await
                    .map_err(connect)?;
                plain.is_authorized(request).await?
            }
        };
        Ok::<_, tonic::Status>(answer.into_inner().decision.unwrap())
    }
    .await;
    match (case.outcome, answer) {
        (Outcome::Allow(policy), Ok(d)) => {
            assert_eq!(d.effect, Effect::Allow as i32, "{what}: {d:?}");
            if let Some(policy) = policy {
                assert_eq!(d.policies[0].id, policy, "{what}");
            }
            Some(d)
        }
        (Outcome::Refused(code, text), Err(e)) => {
            assert_eq!(e.code(), code, "{what}: {e:?}");
            if let Some(text) = text {
                assert!(e.message().contains(text), "{what}: {}", e.message());
            }
            None
        }
        (Outcome::Handshake, Err(e)) => {
            assert_refused_at_handshake(&e, what);
            None
        }
        (_, other) => panic!("{what}: {other:?}"),
    }
}

/// Runs each case in turn.
async fn check_all(port: u16, ca: &Ca, cases: &[Case<'_>]) {
    for case in cases {
        check(port, ca, case).await;
    }
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
    let reporting = idp.service("reporting-service", "reports:read");
    let token = idp.service("orders-service", "orders:read");
    let workload_answered = Case {
        what: "the workload",
        peer: Peer::Tls(Some(&docs)),
        token: None,
        outcome: Outcome::Allow(Some("owner-edits")),
    };

    // Client certificates required.
    let (port, served) = serve_tls(dir.path(), &idp, &ca, Some(true), |y| y).await;
    // The workload is answered: one question, and a batch.
    check(port, &ca, &workload_answered).await;
    let mut workload = client(port, &ca, Some(&docs)).await.unwrap();
    let batch = workload
        .batch_is_authorized(BatchIsAuthorizedRequest {
            principal: Some(uid("User::\"bob\"")),
            items: ["plan", "handbook"]
                .iter()
                .map(|id| BatchItem {
                    action: Some(uid("Action::\"view\"")),
                    resource: Some(uid(&format!("Document::\"{id}\""))),
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

    check_all(
        port,
        &ca,
        &[
            // A token beside the certificate decides, as `Authorization` wins over a peer for
            // Check: reporting-service may not ask about documents, whatever certificate
            // carries the call.
            Case {
                what: "a token beside the certificate",
                peer: Peer::Tls(Some(&docs)),
                token: Some(&reporting),
                outcome: Outcome::Refused(
                    Code::PermissionDenied,
                    Some("Service::\"reporting-service\""),
                ),
            },
            // And a bad token is refused even with a good certificate (never a fall back to
            // the peer).
            Case {
                what: "a bad token beside the certificate",
                peer: Peer::Tls(Some(&docs)),
                token: Some("not-a-token"),
                outcome: Outcome::Refused(Code::Unauthenticated, None),
            },
            // A certificate of the right CA for a trust domain `mtls` doesn't accept.
            Case {
                what: "an untrusted trust domain",
                peer: Peer::Tls(Some(&untrusted)),
                token: None,
                outcome: Outcome::Refused(Code::Unauthenticated, Some("peer_untrusted")),
            },
        ],
    )
    .await;
    served
        .wait_records(1, |r| r["reason"] == "peer_untrusted" && r["status"] == 401)
        .await;

    // Another CA's certificate, and none at all, never get past the handshake; nor plain text.
    let before = served.records().len();
    let handshake = |what, peer| Case {
        what,
        peer,
        token: Some(&token),
        outcome: Outcome::Handshake,
    };
    check_all(
        port,
        &ca,
        &[
            handshake("another CA", Peer::Tls(Some(&foreign))),
            handshake("no certificate", Peer::Tls(None)),
            handshake("plain text", Peer::PlainText),
        ],
    )
    .await;
    // Nothing was asked, so nothing was recorded: a refused handshake reaches no handler.
    let ok = check(port, &ca, &workload_answered).await.unwrap();
    served
        .wait_records(1, |r| r["decision_id"] == ok.decision_id.as_str())
        .await;
    assert_eq!(served.records().len(), before + 1);
    drop(served);

    // Client certificates optional (the default): a token alone is answered; a certificate
    // presented is still verified.
    let (port, optional) = serve_tls(dir.path(), &idp, &ca, None, |y| y).await;
    check_all(
        port,
        &ca,
        &[
            Case {
                what: "a token alone, certificates optional",
                peer: Peer::Tls(None),
                token: Some(&token),
                outcome: Outcome::Allow(None),
            },
            Case {
                what: "neither token nor certificate",
                peer: Peer::Tls(None),
                token: None,
                outcome: Outcome::Refused(Code::Unauthenticated, Some("credentials_missing")),
            },
            Case {
                what: "a certificate alone, certificates optional",
                peer: Peer::Tls(Some(&docs)),
                token: None,
                outcome: Outcome::Allow(None),
            },
            Case {
                what: "another CA, certificates optional",
                peer: Peer::Tls(Some(&foreign)),
                token: None,
                outcome: Outcome::Handshake,
            },
        ],
    )
    .await;
    drop(optional);

    // Without an `mtls` section a certificate is no credential, as for Check: nobody.
    let (port, _served) = serve_tls(dir.path(), &idp, &ca, Some(true), |y| {
        let without = y.replace(
            "mtls:\n  type: Workload\n  trust_domains: [cedargate.test]\n",
            "",
        );
        assert_ne!(without, y, "the example config's mtls section moved");
        without
    })
    .await;
    check(
        port,
        &ca,
        &Case {
            what: "a certificate without mtls",
            peer: Peer::Tls(Some(&docs)),
            token: None,
            outcome: Outcome::Refused(Code::Unauthenticated, Some("credentials_missing")),
        },
    )
    .await;
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
    let yaml = example_config(grpc, admin).replace("authorizer_api:\n", &section);
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
