//! The `cedargate` binary: one `match` over subcommands. `anyhow` lives only here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use cedargate::config::Config;
use cedargate::policy::PolicySnapshot;

#[derive(Parser)]
#[command(
    name = "cedargate",
    version,
    about = "Envoy ext_authz with OIDC/JWT identity and Cedar policies"
)]
struct Cli {
    /// Log format for operational logs on stderr (decision records go to the decision log).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Envoy's Check API and the admin port.
    Serve {
        /// Config file.
        #[arg(short, long, default_value = "cedargate.yaml")]
        config: PathBuf,
    },
    /// Check the config and the policy folder without serving; exit 1 on any problem.
    Validate {
        /// Config file.
        #[arg(short, long, default_value = "cedargate.yaml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Validate { config } => validate(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let running = cedargate::server::start(config).await?;
        wait_for_signal().await?;
        running.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
    }
    Ok(())
}

fn validate(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let snapshot = PolicySnapshot::load(&config.policy_dir)?;
    println!(
        "{}: ok ({} issuers, {} routes, {} policies, policy set {})",
        path.display(),
        config.issuers.len(),
        config.routes.len(),
        snapshot.info.len(),
        snapshot.version
    );
    Ok(())
}
