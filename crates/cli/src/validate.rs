//! `cedargate validate`: checks the config, the Cedar schema, the policies (strict validation),
//! the static entities and the policy test files together, and reports every problem at once with
//! file:line:column and a snippet. Exits non-zero on any error (a route that can never match is
//! one, from the config's route lint); warnings (routes that overlap, a route whose action the
//! schema does not declare, a test whose context does not fit the schema) are printed only. Once
//! config and policies load, it also reports where each entity type's data comes from
//! ([`sources`]).
//!
//! Works offline: it fetches no keys and starts nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use cedar_policy::{EntityTypeName, EntityUid, Schema};

use crate::case::{self, TESTS_DIR};
use crate::{CliError, Diagnostic, Reporter, Severity, plural, sources};
use cedargate_core::config::{Config, action_type};
use cedargate_core::policy::PolicySnapshot;

/// Where the config puts policies when it says nothing (mirrors `config`'s default); used only
/// to keep checking policies when the config itself has errors.
const FALLBACK_POLICY_DIR: &str = "policies";

/// Arguments of `cedargate validate`.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// Config file.
    #[arg(
        short,
        long,
        env = "CEDARGATE_CONFIG",
        default_value = "cedargate.yaml"
    )]
    pub config: PathBuf,
    /// `text` (problems with snippets on stderr, the summary on stdout) or `json` (one JSON
    /// document on stdout: `ok`, `errors`, `warnings`, `diagnostics`, `summary`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Output format of `validate` and `check`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// For programs: one document on stdout; the exit code is the same.
    Json,
}

/// Validates everything; `Ok(true)` when there is no error. Problems go to `err`, the summary to
/// `out`.
pub fn run(
    args: &ValidateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<bool, CliError> {
    let (diagnostics, summary, report) = check(&args.config);
    if args.format == Format::Json {
        return json(&args.config, &diagnostics, summary, out);
    }
    let mut reporter = Reporter::default();
    write!(err, "{}", reporter.render_all(&diagnostics)).map_err(CliError::write("stderr"))?;
    if let Some(report) = report {
        write!(out, "{report}").map_err(CliError::write("stdout"))?;
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    let path = args.config.display();
    match summary {
        Some(summary) if errors == 0 => {
            let warned = if warnings > 0 {
                format!(", {}", plural(warnings, "warning", "warnings"))
            } else {
                String::new()
            };
            writeln!(out, "{path}: ok ({summary}{warned})").map_err(CliError::write("stdout"))?;
            Ok(true)
        }
        _ => {
            writeln!(
                out,
                "{path}: {}, {}",
                plural(errors, "error", "errors"),
                plural(warnings, "warning", "warnings")
            )
            .map_err(CliError::write("stdout"))?;
            Ok(false)
        }
    }
}

/// `--format json`: the whole result as one document on stdout, so nothing needs parsing from
/// text. `ok` is what the exit code says.
fn json(
    config: &Path,
    diagnostics: &[Diagnostic],
    summary: Option<String>,
    out: &mut dyn Write,
) -> Result<bool, CliError> {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let ok = errors == 0 && summary.is_some();
    let items: Vec<serde_json::Value> = diagnostics.iter().map(Diagnostic::to_json).collect();
    let document = serde_json::json!({
        "config": config.display().to_string(),
        "ok": ok,
        "errors": errors,
        "warnings": diagnostics.len() - errors,
        "diagnostics": items,
        "summary": summary,
    });
    writeln!(out, "{document}").map_err(CliError::write("stdout"))?;
    Ok(ok)
}

/// Every problem found; and when config and policies loaded, a one-line summary and the report
/// of where each entity type's data comes from.
pub fn check(config_path: &Path) -> (Vec<Diagnostic>, Option<String>, Option<String>) {
    let mut diagnostics = Vec::new();
    let config = match Config::load(config_path) {
        Ok(c) => {
            diagnostics.extend(c.warnings.iter().map(|w| {
                Diagnostic::warning(
                    &c.source,
                    usize::try_from(w.line).unwrap_or(0),
                    usize::try_from(w.column).unwrap_or(0),
                    &w.message,
                )
            }));
            Some(c)
        }
        Err(e) => {
            diagnostics.extend(crate::config_diagnostics(&e));
            None
        }
    };
    let policy_dir = config
        .as_ref()
        .map_or_else(|| policy_dir_hint(config_path), |c| c.policy_dir.clone());
    let loaded = match &config {
        // Progress of a large policy set to stderr, so a minute's load is not a silent one.
        Some(config) => {
            cedargate_core::shapes::load_checked_reporting(&policy_dir, config, &mut |step| {
                eprintln!("cedargate: {step}")
            })
        }
        None => cedargate_core::policy_folder::check(&policy_dir)
            .and_then(|()| PolicySnapshot::load(&policy_dir)),
    };
    let policies = match loaded {
        Ok(p) => Some(p),
        Err(e) => {
            diagnostics.extend(crate::policy_diagnostics(&e));
            None
        }
    };
    let (Some(config), Some(policies)) = (config, policies) else {
        return (diagnostics, None, None);
    };
    if let Some(schema) = &policies.schema {
        diagnostics.extend(routes_against_schema(&config, schema));
    }
    let (files, problems) = crate::test_files::discover(&[], &config);
    diagnostics.extend(problems);
    let cx = case::Context {
        config: &config,
        policies: &policies,
        now: SystemTime::now(),
    };
    let mut cases = 0;
    for path in &files {
        let (file, problems) = case::read_test_file(path, &cx);
        cases += file.cases.len() + file.broken;
        diagnostics.extend(problems);
    }
    let summary = format!(
        "{}, {}, {}, policy set {}, {} with {} in {}",
        plural(config.issuers.len(), "issuer", "issuers"),
        plural(config.routes.len(), "route", "routes"),
        plural(policies.info.len(), "policy", "policies"),
        policies.version,
        plural(files.len(), "test file", "test files"),
        plural(cases, "case", "cases"),
        config.policy_dir.join(TESTS_DIR).display()
    );
    let report = sources::render(&sources::entity_sources(&config, &policies));
    (diagnostics, Some(summary), Some(report))
}

/// The policy folder named by a config that failed validation: its `policy_dir` if the YAML
/// still parses, else the default, resolved against the config's folder.
fn policy_dir_hint(config_path: &Path) -> PathBuf {
    let base = config_path.parent().unwrap_or(Path::new("."));
    let named = std::fs::read_to_string(config_path)
        .ok()
        .and_then(|text| serde_saphyr::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("policy_dir")?.as_str().map(PathBuf::from));
    base.join(named.unwrap_or_else(|| PathBuf::from(FALLBACK_POLICY_DIR)))
}

/// Routes whose action or resource type the schema does not declare: every request on them is
/// denied, because no policy that names them can validate.
fn routes_against_schema(config: &Config, schema: &Schema) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let declared_types: Vec<EntityTypeName> = schema.entity_types().cloned().collect();
    for route in config.routes.iter() {
        let mut actions = Vec::new();
        match &route.action {
            Some(a) => actions.push(a.to_string()),
            None => {
                for m in &route.methods {
                    actions.push(format!("{m} {}", route.template.as_str()));
                }
            }
        }
        for action in actions {
            let uid = format!(
                "{}::{}",
                action_type(),
                serde_json::Value::from(action.as_str())
            );
            let declared = EntityUid::from_str(&uid)
                .map(|uid| schema.actions().any(|a| *a == uid))
                .unwrap_or(false);
            if !declared {
                out.push(Diagnostic::warning(
                    &config.source,
                    0,
                    0,
                    format!(
                        "route `{}` maps to {uid}, which the schema does not declare: every request on it will be denied",
                        route.name
                    ),
                ));
            }
        }
        let resource_type = route
            .resource
            .as_ref()
            .map_or_else(|| config.resource_type.to_string(), |(t, _)| t.to_string());
        if let Ok(t) = EntityTypeName::from_str(&resource_type)
            && !declared_types.contains(&t)
        {
            out.push(Diagnostic::warning(
                &config.source,
                0,
                0,
                format!(
                    "route `{}` targets resources of type {resource_type}, which the schema does not declare",
                    route.name
                ),
            ));
        }
    }
    out
}
