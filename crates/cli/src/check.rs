//! `cedargate check`: decides one request — given as a file, on stdin, or with flags — through the
//! same path as `serve`, and explains the outcome: the Cedar request, the principal and resource
//! as evaluated (each parent and attribute with its source: [`evaluated`]), the decision, the
//! deciding policies with their annotations, and why ([`explain`]): for a deny what a policy
//! author can act on (the forbids that fired; the permits whose scope matched but whose condition
//! was false, with each `&&`-part's value; the permits for this action whose scope missed, and
//! which part).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::case::{self, Case};
use crate::explain::{self, deciding_lines, describe_decision};
use crate::{CliError, Reporter, evaluated};
use cedargate_core::config::Config;
use cedargate_core::decision::Decision;
use cedargate_core::policy::PolicySnapshot;

/// Arguments of `cedargate check`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CheckArgs {
    /// Config file.
    #[arg(
        short,
        long,
        env = "CEDARGATE_CONFIG",
        default_value = "cedargate.yaml"
    )]
    pub config: PathBuf,
    /// A request file: one test case (request, identity, time; expect optional). `-` reads
    /// stdin. Without it, the request comes from the flags below.
    pub file: Option<PathBuf>,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Path, with query string if any.
    #[arg(long)]
    pub path: Option<String>,
    /// Host (`:authority`).
    #[arg(long)]
    pub host: Option<String>,
    /// Envoy's `context_extensions.service`.
    #[arg(long)]
    pub service: Option<String>,
    /// A request header `name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// An Envoy context extension `key=value` (repeatable).
    #[arg(long = "context-extension", value_name = "KEY=VALUE")]
    pub context_extensions: Vec<String>,
    /// Downstream client IP.
    #[arg(long)]
    pub source_ip: Option<String>,
    /// mTLS peer principal Envoy forwards (e.g. a SPIFFE ID).
    #[arg(long)]
    pub mtls: Option<String>,
    /// Issuer name (from the config) of the caller's token.
    #[arg(long)]
    pub issuer: Option<String>,
    /// A token claim `name=value`; the value is read as JSON when it parses, else as a string
    /// (repeatable).
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
    /// A credential that is rejected with this reason code (e.g. token_expired).
    #[arg(long)]
    pub invalid: Option<String>,
    /// Decision time (RFC 3339).
    #[arg(long)]
    pub time: Option<String>,
    /// `text` (the explanation) or `json` (one JSON document: the decision, its reason, the
    /// deciding policies, errors, the Cedar request and, with `expect`, whether it held).
    #[arg(long, value_enum, default_value_t = crate::validate::Format::Text)]
    pub format: crate::validate::Format,
}

/// Decides and explains one request; `Ok(false)` when the input had problems or a stated
/// `expect` did not hold. The explanation (or JSON document) goes to `out`, problems with the
/// input to `err`.
pub fn run(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool, CliError> {
    let w = CliError::write("stderr");
    let mut reporter = Reporter::default();
    let (config, policies) = match crate::load(&args.config) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            write!(err, "{}", reporter.render_all(&diagnostics)).map_err(w)?;
            return Ok(false);
        }
    };
    let (source, text) = match input(args) {
        Ok(input) => input,
        Err(message) => {
            writeln!(err, "error: {message}").map_err(w)?;
            return Ok(false);
        }
    };
    let cx = case::Context {
        config: &config,
        policies: &policies,
        now: SystemTime::now(),
    };
    let case = match case::parse_check_request(&source, &text, &cx) {
        Ok(case) => case,
        Err(diagnostics) => {
            write!(err, "{}", reporter.render_all(&diagnostics)).map_err(w)?;
            return Ok(false);
        }
    };
    let decision = case.decide(&config, &policies);
    let mismatches = case
        .expect
        .as_ref()
        .map(|e| e.mismatches(&decision))
        .unwrap_or_default();
    if args.format == crate::validate::Format::Json {
        let document = json!({
            "decision": if decision.allowed { "allow" } else { "deny" },
            "status": decision.status,
            "reason": decision.reason,
            "route": decision.route,
            "policies": decision.policies,
            "errors": decision.errors,
            "policy_version": &*decision.policy_version,
            "cedar": decision.cedar,
            "expect": case.expect.as_ref().map(|e| json!({
                "expected": e.describe(),
                "ok": mismatches.is_empty(),
                "mismatches": mismatches,
            })),
        });
        writeln!(out, "{document}").map_err(CliError::write("stdout"))?;
        return Ok(mismatches.is_empty());
    }
    let report = explain(&config, &policies, &case, &decision);
    write!(out, "{report}").map_err(CliError::write("the report"))?;
    if let Some(expect) = &case.expect {
        if mismatches.is_empty() {
            writeln!(out, "\nexpect: ok ({})", expect.describe())
                .map_err(CliError::write("the report"))?;
        } else {
            writeln!(out, "\nexpect: FAILED ({})", mismatches.join("; "))
                .map_err(CliError::write("the report"))?;
        }
    }
    Ok(mismatches.is_empty())
}

/// The request document and the name to report it under.
fn input(args: &CheckArgs) -> Result<(PathBuf, String), String> {
    let flags_used = args.path.is_some()
        || args.host.is_some()
        || args.service.is_some()
        || !args.headers.is_empty()
        || !args.context_extensions.is_empty()
        || args.source_ip.is_some()
        || args.mtls.is_some()
        || args.issuer.is_some()
        || !args.claims.is_empty()
        || args.invalid.is_some()
        || args.time.is_some();
    match &args.file {
        Some(file) if flags_used => Err(format!(
            "give the request as a file ({}) or as flags, not both",
            file.display()
        )),
        Some(file) if file == Path::new("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            Ok((PathBuf::from("<stdin>"), text))
        }
        Some(file) => std::fs::read_to_string(file)
            .map(|text| (file.clone(), text))
            .map_err(|e| format!("{}: cannot read: {e}", file.display())),
        None => {
            if args.path.is_none() {
                return Err(
                    "say which request to check: a request file, `-` for stdin, or --path (with --method, --service, --issuer, --claim …)"
                        .into(),
                );
            }
            let document = flags_document(args)?;
            Ok((PathBuf::from("<command line>"), document.to_string()))
        }
    }
}

/// The flags as a request document in the test case format (JSON is YAML), so that they are
/// checked exactly like a file.
fn flags_document(args: &CheckArgs) -> Result<Value, String> {
    let mut request = Map::new();
    request.insert("method".into(), args.method.as_str().into());
    for (key, value) in [
        ("path", &args.path),
        ("host", &args.host),
        ("service", &args.service),
    ] {
        if let Some(v) = value {
            request.insert(key.into(), v.as_str().into());
        }
    }
    let mut headers = Map::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header `{h}` must be `name: value`"))?;
        headers.insert(name.trim().to_string(), value.trim().into());
    }
    request.insert("headers".into(), Value::Object(headers));
    let mut extensions = Map::new();
    for e in &args.context_extensions {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| format!("--context-extension `{e}` must be `key=value`"))?;
        extensions.insert(k.to_string(), v.into());
    }
    request.insert("context_extensions".into(), Value::Object(extensions));
    if let Some(ip) = &args.source_ip {
        request.insert("source".into(), json!({ "ip": ip }));
    }
    let mut doc = Map::new();
    doc.insert("request".into(), Value::Object(request));
    let identity = match (&args.issuer, &args.invalid, &args.mtls) {
        (None, None, None) if args.claims.is_empty() => None,
        (Some(issuer), None, None) => {
            let mut claims = Map::new();
            for c in &args.claims {
                let (k, v) = c
                    .split_once('=')
                    .ok_or_else(|| format!("--claim `{c}` must be `name=value`"))?;
                let value = serde_json::from_str(v).unwrap_or_else(|_| Value::from(v));
                claims.insert(k.to_string(), value);
            }
            Some(json!({ "issuer": issuer, "claims": claims }))
        }
        (None, Some(reason), None) if args.claims.is_empty() => Some(json!({ "invalid": reason })),
        (None, None, Some(peer)) if args.claims.is_empty() => Some(json!({ "mtls": peer })),
        (None, None, None) => return Err("--claim needs --issuer".into()),
        _ => {
            return Err("the caller is one of: --issuer with --claim, --invalid, or --mtls".into());
        }
    };
    if let Some(identity) = identity {
        doc.insert("identity".into(), identity);
    }
    if let Some(t) = &args.time {
        doc.insert("time".into(), t.as_str().into());
    }
    Ok(Value::Object(doc))
}

/// The full report for one decision.
pub fn explain(
    config: &Config,
    policies: &PolicySnapshot,
    case: &Case,
    decision: &Decision,
) -> String {
    let mut s = String::new();
    let r = &case.request;
    let target = if r.query.is_empty() {
        r.path.clone()
    } else {
        format!("{}?{}", r.path, r.query)
    };
    s.push_str(&format!(
        "request:  {} {} (host {}{})\n",
        r.method,
        target,
        r.host,
        r.context_extensions
            .get("service")
            .map(|svc| format!(", service {svc}"))
            .unwrap_or_default()
    ));
    s.push_str(&format!("caller:   {}\n", caller_text(config, case)));
    s.push_str(&format!(
        "route:    {}\n",
        decision.route.as_deref().unwrap_or("(none)")
    ));
    s.push_str(&format!("decision: {}\n", describe_decision(decision)));
    s.push_str(&deciding_lines(decision, policies, ""));
    if !decision.errors.is_empty() {
        for e in &decision.errors {
            s.push_str(&format!("error:    {e}\n"));
        }
    }
    s.push('\n');
    let Some(cedar) = &decision.cedar else {
        s.push_str("why:\n");
        s.push_str(&format!("  {}\n", before_policies(config, case, decision)));
        return s;
    };
    s.push_str("cedar request:\n");
    s.push_str(&format!("  principal: {}\n", cedar.principal));
    s.push_str(&format!("  action:    {}\n", cedar.action));
    s.push_str(&format!("  resource:  {}\n", cedar.resource));
    let context = serde_json::to_string_pretty(&cedar.context).unwrap_or_default();
    s.push_str(&format!(
        "  context:   {}\n",
        context.replace('\n', "\n             ")
    ));
    s.push('\n');
    s.push_str(&evaluated::evaluated_entities(
        config,
        policies,
        case.token(),
        cedar,
    ));
    s.push('\n');
    s.push_str("why:\n");
    s.push_str(&explain::why(policies, decision, cedar));
    s
}

fn caller_text(config: &Config, case: &Case) -> String {
    match case.identity(config) {
        Ok(cedargate_core::identity::Identity::Anonymous) => "anonymous (no credential)".into(),
        Ok(cedargate_core::identity::Identity::Peer(p)) => format!("mTLS peer {p}"),
        Ok(cedargate_core::identity::Identity::ApiKey(key)) => format!("api key {}", key.id),
        Ok(cedargate_core::identity::Identity::Token { token, .. }) => {
            let claims = Value::Object(token.claims.clone());
            format!(
                "token from issuer {} with claims {claims}",
                token.issuer.name
            )
        }
        Err(e) => format!("rejected credential ({}: {e})", e.reason()),
    }
}

/// Why a request was decided before Cedar saw it.
fn before_policies(config: &Config, case: &Case, d: &Decision) -> String {
    let r = &case.request;
    match d.reason {
        "no_route" => format!(
            "no route in {} matches {} {} (service {}, host {}); add a route, or set `unmatched_route: default` to let policies decide unlisted paths",
            config.source.display(),
            r.method,
            r.path,
            r.context_extensions
                .get("service")
                .map_or("(none)", String::as_str),
            r.host
        ),
        "headers_too_large" => format!(
            "the request headers ({} bytes) exceed limits.max_header_bytes ({})",
            r.header_bytes, config.limits.max_header_bytes
        ),
        reason => format!(
            "the credential was rejected ({reason}) before any policy ran: a bad credential is a {} whatever the policies say",
            d.status
        ),
    }
}
