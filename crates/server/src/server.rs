//! Wiring for `cedargate serve`: bind the admin port (liveness answers from here on), load
//! policies (refusing to start on any problem), start key fetching, bind the Check port (gRPC
//! `Authorization` + `grpc.health.v1.Health`), and drain on shutdown: health goes NOT_SERVING,
//! readiness false, Checks are still answered for `listen.drain_seconds`, then new connections
//! are refused and in-flight Checks finish. With `authorizer_api`, the `cedargate.v1.Authorizer`
//! service and gRPC server reflection are served too: on the Check port, or on a listener of
//! their own (`authorizer_api.listen`, with its own health service), drained alike. That
//! listener speaks TLS with `authorizer_api.tls` (rustls on aws-lc-rs through tonic), verifying
//! client certificates against its CA bundle so workloads can call with their certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::admin::{self, Admin};
use crate::authorizer::AuthorizerService;
use crate::decision_log::DecisionLog;
use crate::entity_provider::EntityProvider;
use crate::gate::Gate;
use crate::grpc::CheckService;
use crate::jwks::{self, Jwks};
use crate::jwt::Verifier;
use crate::reload::Reloader;
use cedargate_api::v1::authorizer_server::AuthorizerServer;
use cedargate_core::config::Config;
use cedargate_core::policy::{LoadProgress, PolicyLoadError};

/// How long a TLS handshake on the Authorizer API's listener may take: a workload on the same
/// network finishes in milliseconds; the bound keeps a client that stalls mid-handshake from
/// holding a connection slot.
const API_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for queued decision records to be written.
const LOG_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The policy folder has problems.
    #[error("policies in {dir} are invalid:\n{source}")]
    Policy {
        /// The folder.
        dir: String,
        /// Every problem.
        source: PolicyLoadError,
    },
    /// A port could not be bound, or the log could not be opened.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The HTTP client for key fetching could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    /// The decision log could not start.
    #[error(transparent)]
    DecisionLog(#[from] crate::decision_log::DecisionLogError),
    /// The upstream-token keys could not be loaded or generated.
    #[error("upstream_token.key_files: {0}")]
    Keys(#[from] crate::mint::MintError),
    /// `policy_bundle`: no bundle to enforce (none fetched, none cached).
    #[error("policy_bundle: {0}")]
    Bundle(#[from] crate::bundle_fetch::BundleFetchError),
    /// The entity provider's client could not be built.
    #[error(transparent)]
    EntityProvider(#[from] crate::entity_provider::BuildError),
    /// The reflection service could not read the API's descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// `authorizer_api.tls`: a file could not be read, or rustls refused the certificate, key
    /// or CA bundle (e.g. a key that is not the certificate's).
    #[error("authorizer_api.tls: {0}")]
    ApiTls(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// A gRPC server's task.
type GrpcTask = JoinHandle<Result<(), tonic::transport::Error>>;

/// A started server.
pub struct Running {
    /// Bound Check (gRPC) address.
    pub grpc_addr: SocketAddr,
    /// Bound admin address.
    pub admin_addr: SocketAddr,
    /// Where the `Authorizer` API answers (`authorizer_api`): the Check port or its own
    /// listener; `None` when it is off.
    pub api_addr: Option<SocketAddr>,
    /// The `Authorizer` API's own server (with `authorizer_api.listen`): its stop signal and task.
    api_server: Option<(oneshot::Sender<()>, GrpcTask)>,
    /// The pipeline (for tests and reloads).
    pub gate: Arc<Gate>,
    /// Health reporter, to go NOT_SERVING on drain.
    health: tonic_health::server::HealthReporter,
    /// Readiness flag flipped on drain.
    draining: Arc<AtomicBool>,
    /// Fires the gRPC server's graceful shutdown.
    stop_grpc: oneshot::Sender<()>,
    /// Fires the admin server's shutdown.
    stop_admin: oneshot::Sender<()>,
    /// The gRPC server task.
    grpc_task: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Background key refresh tasks, aborted on shutdown.
    refresh_tasks: Vec<JoinHandle<()>>,
    /// Hot reload (file watching + SIGHUP), also callable directly.
    pub reload: Arc<Reloader>,
    /// The reload task, aborted on shutdown.
    reload_task: JoinHandle<()>,
}

/// Starts serving `config`: the admin port first (liveness answers while policies load), then
/// the policies, keys, decision log and reloader, then the Check port. Readiness turns true
/// once the policies are in force and every issuer has keys.
pub async fn start(config: Config) -> Result<Running, ServeError> {
    // With `policy_bundle`: fetch (or fall back to the cached last good bundle), verify, unpack;
    // `policy_dir` becomes the unpacked bundle's folder.
    let config = crate::bundle_fetch::prepare(config).await?;
    let config = Arc::new(config);
    crate::metrics::start(&config);
    let admin_state = Admin::default();
    let draining = admin_state.draining.clone();
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .map_err(io(format!("binding {}", config.admin_listen)))?;
    let admin_addr = admin_listener.local_addr().map_err(io("admin address"))?;
    // Dropping `stop_admin` (an early return below) stops the admin server too.
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let router = admin::router(admin_state.clone());
    tokio::spawn(async move {
        let served = axum::serve(admin_listener, router)
            .with_graceful_shutdown(async {
                let _ = admin_stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin.serve_failed");
        }
    });
    tracing::info!(admin = %admin_addr, "admin.listening");

    // Policy loading is CPU-bound and can take long for a large set: off the async workers, so
    // the admin port keeps answering meanwhile.
    let loaded = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || load(&config))
            .await
            .map_err(|e| ServeError::Io {
                what: "loading policies".into(),
                source: std::io::Error::other(e),
            })??
    };
    let Loaded {
        policies,
        shadow,
        upstream_keys,
    } = loaded;
    let jwks = Arc::new(Jwks::new(&config.issuers, jwks::http_client()?));
    let refresh_tasks = jwks.spawn_refresh();
    let log = DecisionLog::start_configured(&config.decision_log)?;
    let verifier = Verifier::new(
        jwks,
        config.token_cache.capacity,
        config.limits.max_token_bytes,
    );
    let entity_provider = config
        .entity_provider
        .as_ref()
        .map(EntityProvider::new)
        .transpose()?;
    let gate = Arc::new(
        Gate::new(config.clone(), policies, upstream_keys, verifier, log)
            .with_shadow(shadow)
            .with_entity_provider(entity_provider),
    );
    let reload = Arc::new(Reloader::new(gate.clone(), config.source.clone()));
    let reload_task = reload.clone().spawn();

    let grpc_listener = TcpListener::bind(config.grpc_listen)
        .await
        .map_err(io(format!("binding {}", config.grpc_listen)))?;
    let grpc_addr = grpc_listener.local_addr().map_err(io("grpc address"))?;

    let (health, health_service) = tonic_health::server::health_reporter();
    let has_api = config.authorizer_api.is_some();
    // Detached: it ends by itself when draining starts.
    tokio::spawn(follow_readiness(
        health.clone(),
        gate.clone(),
        draining.clone(),
        has_api,
    ));

    // The Authorizer API (+ reflection): on the Check port unless it has a listener of its own.
    let api = match &config.authorizer_api {
        Some(settings) => {
            let reflection = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(cedargate_api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .build_v1()?;
            let service = AuthorizerServer::new(AuthorizerService::new(gate.clone()));
            Some((settings.listen, service, reflection))
        }
        None => None,
    };
    // Read before anything is bound for the API; validation checked the files' PEM blocks,
    // rustls checks the rest (a key that doesn't match the certificate stops the start here).
    let api_tls = match config.authorizer_api.as_ref().and_then(|a| a.tls.as_ref()) {
        Some(tls) => Some((
            api_tls(tls).await?,
            format!(
                "cert_file {}, key_file {}",
                tls.cert_file.display(),
                tls.key_file.display()
            ),
        )),
        None => None,
    };
    let (on_check_port, api_server, api_addr) = match api {
        Some((Some(listen), service, reflection)) => {
            let listener = TcpListener::bind(listen)
                .await
                .map_err(io(format!("binding authorizer_api.listen {listen}")))?;
            let addr = listener
                .local_addr()
                .map_err(io("authorizer_api address"))?;
            let (stop, stopped) = oneshot::channel::<()>();
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let mut builder = tonic::transport::Server::builder();
            if let Some((tls, files)) = api_tls {
                builder = builder
                    .tls_config(tls)
                    .map_err(|e| ServeError::ApiTls(format!("{files}: {}", with_causes(&e))))?;
            }
            let task = tokio::spawn(
                builder
                    .concurrency_limit_per_connection(config.limits.max_concurrent_checks)
                    .load_shed(true)
                    .add_service(health_service.clone())
                    .add_service(reflection)
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    }),
            );
            let tls = config
                .authorizer_api
                .as_ref()
                .and_then(|a| a.tls.as_ref())
                .map_or("off", |t| {
                    match (&t.client_ca_file, t.require_client_cert) {
                        (None, _) => "server",
                        (Some(_), false) => "client certificates optional",
                        (Some(_), true) => "client certificates required",
                    }
                });
            tracing::info!(authorizer_api = %addr, tls, "authorizer_api.listening");
            (None, Some((stop, task)), Some(addr))
        }
        Some((None, service, reflection)) => (Some((service, reflection)), None, Some(grpc_addr)),
        None => (None, None, None),
    };
    let (api_service, reflection) = match on_check_port {
        Some((service, reflection)) => (Some(service), Some(reflection)),
        None => (None, None),
    };

    let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let service = AuthorizationServer::new(CheckService::new(gate.clone()));
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            // Bounded concurrency with shedding: overload becomes RESOURCE_EXHAUSTED (Envoy
            // denies, fail closed) rather than an unbounded queue.
            .concurrency_limit_per_connection(config.limits.max_concurrent_checks)
            .load_shed(true)
            .add_service(health_service)
            .add_service(service)
            .add_optional_service(api_service)
            .add_optional_service(reflection)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = grpc_stopped.await;
            }),
    );

    let loops = std::iter::once(("grpc".to_string(), grpc_task.abort_handle()))
        .chain(std::iter::once((
            "reload".to_string(),
            reload_task.abort_handle(),
        )))
        .chain(
            config
                .issuers
                .iter()
                .zip(&refresh_tasks)
                .map(|(issuer, task)| (format!("jwks {}", issuer.name), task.abort_handle())),
        )
        .map(|(name, task)| admin::Loop { name, task })
        .collect();
    // Only this function sets it, once; `set` fails only if already set.
    let _ = admin_state.started.set(admin::Started {
        gate: gate.clone(),
        reload: reload.clone(),
        loops,
    });

    tracing::info!(grpc = %grpc_addr, admin = %admin_addr, "cedargate.listening");
    Ok(Running {
        grpc_addr,
        admin_addr,
        api_addr,
        api_server,
        gate,
        health,
        draining,
        stop_grpc,
        stop_admin,
        grpc_task,
        refresh_tasks,
        reload,
        reload_task,
    })
}

/// The rustls settings of the API's own listener: its certificate and key, and the CA bundle
/// client certificates must chain to (optional or required). Key bytes never reach an error.
async fn api_tls(
    tls: &cedargate_core::config::ApiTlsConfig,
) -> Result<tonic::transport::ServerTlsConfig, ServeError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |path: &std::path::Path| {
        let path = path.to_path_buf();
        async move {
            tokio::fs::read(&path).await.map_err(|e| {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "no such file".to_string(),
                    _ => cedargate_core::config::io_words(&e),
                };
                ServeError::ApiTls(format!("{}: {why}", path.display()))
            })
        }
    };
    let identity = Identity::from_pem(read(&tls.cert_file).await?, read(&tls.key_file).await?);
    let mut config = ServerTlsConfig::new()
        .identity(identity)
        .timeout(API_TLS_HANDSHAKE_TIMEOUT);
    if let Some(ca) = &tls.client_ca_file {
        config = config
            .client_ca_root(Certificate::from_pem(read(ca).await?))
            .client_auth_optional(!tls.require_client_cert);
    }
    Ok(config)
}

/// An error with its causes, one after the other (tonic's transport errors say little alone).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How often the gRPC health status is brought in line with readiness. Envoy's health checks
/// (envoy-fleet.yaml: every 1 s) then see a change within a quarter of their interval.
const HEALTH_FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

/// Keeps the gRPC health status (the Check service, the Authorizer API when served, and the
/// server as a whole, `""`) equal to readiness as `/readyz` computes it: `SERVING` only while
/// every issuer's keys are usable. Envoy health-checks this service, so a replica still fetching
/// its first keys (or whose keys went stale) gets no traffic it could only deny
/// `keys_unavailable`. Ends when draining starts; `shutdown_or` sets `NOT_SERVING` then.
async fn follow_readiness(
    health: tonic_health::server::HealthReporter,
    gate: Arc<Gate>,
    draining: Arc<AtomicBool>,
    has_api: bool,
) {
    let mut shown = None;
    let mut ticks = tokio::time::interval(HEALTH_FOLLOW_INTERVAL);
    loop {
        ticks.tick().await;
        if draining.load(Ordering::Relaxed) {
            return;
        }
        let ready = gate
            .verifier
            .jwks()
            .issuers()
            .iter()
            .all(|k| k.status().usable);
        if shown == Some(ready) {
            continue;
        }
        shown = Some(ready);
        let status = if ready {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        // The reporter keys services by their full gRPC name, as `set_serving::<S>()` does.
        health
            .set_service_status(
                <AuthorizationServer<CheckService> as tonic::server::NamedService>::NAME,
                status,
            )
            .await;
        if has_api {
            health
                .set_service_status(
                    <AuthorizerServer<AuthorizerService> as tonic::server::NamedService>::NAME,
                    status,
                )
                .await;
        }
        health.set_service_status("", status).await;
    }
}

/// What `start` loads before it serves: the policy set, the shadow candidate, the upstream keys.
struct Loaded {
    /// The enforced policy set.
    policies: cedargate_core::policy::PolicySnapshot,
    /// The shadow candidate, when configured.
    shadow: Option<Arc<cedargate_core::policy::PolicySnapshot>>,
    /// Upstream-token keys, when `upstream_token` is on.
    upstream_keys: Option<Arc<crate::mint::KeyRing>>,
}

/// Loads policies (refusing to start on any problem), the shadow candidate and upstream keys.
fn load(config: &Config) -> Result<Loaded, ServeError> {
    // A large policy set takes a while: say how far it has come (only large ones report).
    let mut progress = |step: LoadProgress<'_>| tracing::info!(%step, "policy.loading");
    let policies =
        cedargate_core::shapes::load_checked_reporting(&config.policy_dir, config, &mut progress)
            .map_err(|source| ServeError::Policy {
            dir: config.policy_dir.display().to_string(),
            source,
        })?;
    tracing::info!(
        version = %policies.version,
        policies = policies.info.len(),
        dir = %config.policy_dir.display(),
        "policy.loaded"
    );
    let shadow = crate::shadow::load(config).map_err(|source| ServeError::Policy {
        dir: config
            .shadow
            .as_ref()
            .map_or_else(String::new, |s| s.policy_dir.display().to_string()),
        source,
    })?;
    let upstream_keys = match &config.upstream_token {
        Some(settings) => Some(crate::mint::upstream_keys(settings, None)?),
        None => None,
    };
    Ok(Loaded {
        policies,
        shadow,
        upstream_keys,
    })
}

impl Running {
    /// Drains and stops (see [`Running::shutdown_or`]), waiting the whole drain period.
    pub async fn shutdown(self) {
        self.shutdown_or(std::future::pending()).await;
    }

    /// Drains: gRPC health `NOT_SERVING` and readiness false, then keeps answering Checks for
    /// `listen.drain_seconds` (of the config in force) so that Envoy's health checks and the
    /// orchestrator stop sending here, unless `cut_short` resolves first (a second signal);
    /// then stops accepting, lets in-flight Checks finish, flushes the decision log.
    pub async fn shutdown_or(self, cut_short: impl std::future::Future<Output = ()>) {
        let drain = self.gate.active.load().config.drain;
        tracing::info!(drain_seconds = drain.as_secs(), "cedargate.draining");
        self.draining.store(true, Ordering::Relaxed);
        self.health
            .set_not_serving::<AuthorizationServer<CheckService>>()
            .await;
        if self.api_addr.is_some() {
            self.health
                .set_not_serving::<AuthorizerServer<AuthorizerService>>()
                .await;
        }
        self.health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        if !drain.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(drain) => {}
                () = cut_short => tracing::info!("cedargate.drain_cut_short"),
            }
        }
        let _ = self.stop_grpc.send(());
        let api_task = self.api_server.map(|(stop, task)| {
            let _ = stop.send(());
            task
        });
        for task in std::iter::once(self.grpc_task).chain(api_task) {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "grpc.serve_failed"),
                Err(e) => tracing::error!(error = %e, "grpc.task_failed"),
            }
        }
        self.gate.log.flush(LOG_FLUSH_LIMIT).await;
        let _ = self.stop_admin.send(());
        for task in self.refresh_tasks {
            task.abort();
        }
        self.reload_task.abort();
        tracing::info!("cedargate.stopped");
    }
}
