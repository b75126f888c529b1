//! The `cedargate` binary: one `match` over subcommands. `anyhow` lives only here.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// mimalloc instead of glibc's allocator: the Check path allocates small objects on several
/// threads, and the serve-mode profile showed glibc's arena locking and consolidation at ~15 %.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cedargate_cli as cli;
use cedargate_core::config::{self, Config};
use cedargate_server::telemetry;

#[derive(Parser)]
#[command(
    name = "cedargate",
    about = "Envoy ext_authz with OIDC/JWT identity and Cedar policies"
)]
struct Cli {
    /// Log format for operational logs on stderr (decision records go to the decision log).
    /// Default: `telemetry.log.format` from the config for `serve`, else text.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Colour in operational logs: `auto` colours only a terminal, and never when `NO_COLOR`
    /// is set (https://no-color.org).
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

/// `--version`: cedargate's version, the commit it was built from, and the Cedar it decides
/// with (the SDK crate and the policy language it implements).
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (commit {}; Cedar SDK {}, language {})",
        env!("CARGO_PKG_VERSION"),
        env!("CEDARGATE_COMMIT"),
        cedar_policy::get_sdk_version(),
        cedar_policy::get_lang_version()
    )
});

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    /// Whether logs on stderr get ANSI colours.
    fn ansi(self) -> bool {
        use std::io::IsTerminal as _;
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stderr().is_terminal()
            }
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl From<LogFormat> for config::LogFormat {
    fn from(format: LogFormat) -> config::LogFormat {
        match format {
            LogFormat::Text => config::LogFormat::Text,
            LogFormat::Json => config::LogFormat::Json,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve Envoy's Check API and the admin port.
    Serve {
        /// Config file.
        #[arg(
            short,
            long,
            env = "CEDARGATE_CONFIG",
            default_value = "cedargate.yaml"
        )]
        config: PathBuf,
    },
    /// Check config, schema, policies, entities and policy tests without serving; exit 1 on any
    /// problem.
    Validate(cli::validate::ValidateArgs),
    /// Run the policy tests (Envoy-shaped requests → expected decisions) with coverage.
    Test(cli::test::TestArgs),
    /// Decide one request and explain the decision.
    Check(Box<cli::check::CheckArgs>),
    /// Print a Cedar schema for the entities, actions and context this config produces.
    Schema(cli::schema::SchemaArgs),
    /// Filter, print, summarize or follow decision records.
    Logs(cli::logs::LogsArgs),
    /// Re-evaluate recorded decisions against a candidate policy set and report what would
    /// change; exit 1 on what --fail-on names (default: any deny -> allow), 2 if it can't run.
    Replay(cli::replay::ReplayArgs),
    /// Signed policy bundles for `policy_bundle`: build, sign, verify, keygen.
    Bundle(cli::bundle::BundleArgs),
    /// Create, revoke, remove and list API keys in a key file (api_keys.file).
    Apikey(cli::apikey::ApiKeyArgs),
    /// Print a shell completion script to stdout (e.g. `cedargate completions bash >
    /// /etc/bash_completion.d/cedargate`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout (e.g. `cedargate man > cedargate.1`).
    Man,
    /// Ask a running cedargate whether it is ready (exit 0) or not (exit 1), in one line: the
    /// container health check (the image has no shell and no curl).
    Health(HealthArgs),
}

/// `cedargate health`: which admin port to ask, and what.
#[derive(clap::Args)]
struct HealthArgs {
    /// The admin URL to GET, e.g. `http://127.0.0.1:9192/readyz` (overrides -c and --live).
    #[arg(long, conflicts_with = "config")]
    url: Option<String>,
    /// Config file whose `listen.admin` names the port (`0.0.0.0` is asked on 127.0.0.1).
    #[arg(
        short,
        long,
        env = "CEDARGATE_CONFIG",
        default_value = "cedargate.yaml"
    )]
    config: PathBuf,
    /// Ask `/healthz` (alive) instead of `/readyz` (ready for traffic).
    #[arg(long)]
    live: bool,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// The command line as clap describes it, with the long version; for help, completions and the
/// man page alike.
fn command() -> clap::Command {
    Cli::command().version(VERSION.as_str())
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let log_format = cli.log_format.map(config::LogFormat::from);
    let ansi = cli.color.ansi();
    if !matches!(cli.command, Command::Serve { .. }) {
        // `serve` starts its logs from the config; the offline commands log little.
        let format = log_format.unwrap_or(config::LogFormat::Text);
        if let Err(e) = telemetry::init_logs("info", format, ansi) {
            eprintln!("warning: {e}");
        }
    }
    // `Ok(false)`: a policy-authoring command found problems and has printed them.
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let result: anyhow::Result<bool> = match cli.command {
        Command::Serve { config } => serve(&config, log_format, ansi).map(|()| true),
        Command::Validate(args) => {
            cli::validate::run(&args, &mut out, &mut err).map_err(Into::into)
        }
        Command::Test(args) => cli::test::run(&args, &mut out, &mut err).map_err(Into::into),
        Command::Check(args) => cli::check::run(&args, &mut out, &mut err).map_err(Into::into),
        Command::Schema(args) => cli::schema::run(&args, &mut out, &mut err).map_err(Into::into),
        Command::Logs(args) => cli::logs::run(&args, &mut out, &mut err).map_err(Into::into),
        Command::Bundle(args) => cli::bundle::run(&args, &mut out, &mut err).map_err(Into::into),
        Command::Apikey(args) => cli::apikey::run(&args, &mut out, &mut err).map_err(Into::into),
        Command::Completions { shell } => {
            // Into memory first: `generate` panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "cedargate", &mut script);
            out.write_all(&script)
                .map(|()| true)
                .context("writing the completion script")
        }
        Command::Man => clap_mangen::Man::new(command())
            .render(&mut out)
            .map(|()| true)
            .context("writing the man page"),
        Command::Health(args) => health(&args),
        Command::Replay(args) => match cli::replay::run(&args, &mut out, &mut err) {
            Ok(status) => return ExitCode::from(status.code()),
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: many messages already quote their source (a
/// policy error lists its problems), and `{:#}` would print them a second time.
fn chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if !text.contains(&said) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&said);
        }
    }
    text
}

/// `cedargate health`: one GET on the admin port; the verdict line on stdout (healthy) or stderr.
fn health(args: &HealthArgs) -> anyhow::Result<bool> {
    use cedargate_server::probe::{self, Probe};
    let kind = if args.live { Probe::Live } else { Probe::Ready };
    let url = match &args.url {
        Some(url) => url.clone(),
        None => probe::url_for(Config::load(&args.config)?.admin_listen, kind),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let outcome = runtime.block_on(probe::check(
        &url,
        std::time::Duration::from_millis(args.timeout_ms),
    ));
    if outcome.healthy {
        println!("{}", outcome.line);
    } else {
        eprintln!("{}", outcome.line);
    }
    Ok(outcome.healthy)
}

fn serve(
    path: &std::path::Path,
    log_format: Option<config::LogFormat>,
    ansi: bool,
) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // The OTLP exporter's gRPC channel is created on (and runs on) this runtime.
    let telemetry = {
        let _runtime = runtime.enter();
        telemetry::init(&config.telemetry, log_format, ansi).context("starting telemetry")?
    };
    cedargate_server::reload::log_config_warnings(&config);
    let served = runtime.block_on(async {
        let running = cedargate_server::server::start(config).await?;
        wait_for_signal().await?;
        // A second SIGTERM/SIGINT ends the drain period early.
        running
            .shutdown_or(async {
                let _ = wait_for_signal().await;
            })
            .await;
        Ok(())
    });
    // Export the last spans while the runtime (and the exporter's channel) still runs.
    telemetry.shutdown();
    served
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
