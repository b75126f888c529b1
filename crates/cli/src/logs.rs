//! `cedargate logs`: reads decision records (files, or stdin), filters them, and prints one
//! readable line per decision, the matching records verbatim (`--json`), or a summary (counts by
//! decision, status and reason, the most denied principals, actions, resources and routes, and
//! latency percentiles). `--follow` keeps reading a live log file, across rotation.
//!
//! Read-only and offline: it never changes a log and never decides anything. Exits 0 when at least
//! one record matched, 1 when none did (like `grep`), so scripts can test for a decision.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use crate::CliError;
use crate::records::{self, Filter, FilterArgs, Input, Skipped};
use cedargate_core::record::DecisionRecord;

/// Entries in each top list of the summary unless `--top` says otherwise.
const DEFAULT_TOP: usize = 10;

/// Arguments of `cedargate logs`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogsArgs {
    /// Decision-log files (JSON Lines, as `serve` writes them); `-` or nothing reads stdin.
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print matching records exactly as written, one JSON line each.
    #[arg(long, conflicts_with = "summary")]
    pub json: bool,
    /// Print a summary of the matching records instead of the records.
    #[arg(long)]
    pub summary: bool,
    /// Entries in each top list of --summary.
    #[arg(long, default_value_t = DEFAULT_TOP, value_name = "N")]
    pub top: usize,
    /// Keep reading one log file as it grows, across rotation (stop with Ctrl-C).
    #[arg(short, long, conflicts_with = "summary")]
    pub follow: bool,
}

/// Prints the matching records or their summary; `Ok(false)` when nothing matched.
pub fn run(args: &LogsArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool, CliError> {
    run_until(args, out, err, &|| false)
}

/// [`run`], with a way to end `--follow` (tests; the binary follows until interrupted).
pub fn run_until(
    args: &LogsArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    stop: &dyn Fn() -> bool,
) -> Result<bool, CliError> {
    let filter = Filter::new(&args.filter, SystemTime::now()).map_err(CliError::Usage)?;
    if args.files.is_empty() && std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "name decision-log files, or pipe records in (`-` reads stdin)".into(),
        ));
    }
    let inputs = Input::from_args(&args.files);
    let mut skipped = Skipped::default();
    let mut matched = 0usize;
    let mut summary = Summary::default();
    let mut write_failed: Option<std::io::Error> = None;
    let mut each = |record: DecisionRecord, raw: &str| -> bool {
        if !filter.matches(&record) {
            return true;
        }
        matched += 1;
        if args.summary {
            summary.add(&record);
            return true;
        }
        let written = if args.json {
            writeln!(out, "{raw}")
        } else {
            writeln!(out, "{}", line(&record))
        };
        match written.and_then(|()| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                write_failed = Some(e);
                false
            }
        }
    };
    if args.follow {
        let [Input::File(path)] = inputs.as_slice() else {
            return Err(CliError::Usage(
                "--follow reads one log file (not stdin): name it".into(),
            ));
        };
        records::follow(path, &mut skipped, stop, &mut each)?;
    } else {
        records::read_all(&inputs, &mut skipped, &mut each)?;
    }
    match write_failed {
        // `cedargate logs … | head`: the reader is gone, which is not an error.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(true),
        Some(e) => return Err(CliError::write("stdout")(e)),
        None => {}
    }
    for warning in skipped.warnings() {
        writeln!(err, "{warning}").map_err(CliError::write("stderr"))?;
    }
    if args.summary {
        write!(out, "{}", summary.render(args.top)).map_err(CliError::write("stdout"))?;
    }
    Ok(matched > 0)
}

/// The readable one-line form of a record:
/// `time decision status reason principal action on resource by policies latency id`; a record
/// of a request refused before a Cedar request was built shows `- METHOD path` instead.
pub fn line(r: &DecisionRecord) -> String {
    let mut s = format!("{} {:<5} {} {:<22}", r.time, r.decision, r.status, r.reason);
    match (&r.principal, &r.action, &r.resource) {
        (Some(p), Some(a), Some(res)) => {
            let action = records::entity_id(a).unwrap_or_else(|| a.clone());
            s.push_str(&format!(" {p} {action} on {res}"));
        }
        _ => {
            s.push_str(" -");
            // Refused before a Cedar request was built: what was asked for.
            if let Some(line) = &r.request {
                s.push_str(&format!(" {} {}", line.method, line.path));
            }
            if let Some(t) = &r.token {
                s.push_str(&format!(
                    " token {}/{}",
                    t.issuer,
                    t.sub.as_deref().unwrap_or("?")
                ));
            }
        }
    }
    if !r.policies.is_empty() {
        let ids: Vec<&str> = r.policies.iter().map(|p| p.id.as_str()).collect();
        s.push_str(&format!(" by {}", ids.join(",")));
    }
    if !r.errors.is_empty() {
        s.push_str(&format!(" errors={}", r.errors.len()));
    }
    if let Some(ip) = &r.source_ip {
        s.push_str(&format!(" from {ip}"));
    }
    if let Some(shadow) = r.shadow.as_ref().filter(|s| !s.agrees) {
        s.push_str(&format!(
            " SHADOW {} {} {}",
            shadow.decision, shadow.status, shadow.reason
        ));
    }
    s.push_str(&format!(" {}us id={}", r.latency_us, r.decision_id));
    s
}

/// Counts over the matching records.
#[derive(Debug, Default)]
struct Summary {
    /// Records counted.
    total: usize,
    /// Earliest and latest `time` (RFC 3339 with a fixed width sorts as text).
    first: Option<String>,
    /// See `first`.
    last: Option<String>,
    /// By `decision`.
    decisions: BTreeMap<String, usize>,
    /// By `status`.
    statuses: BTreeMap<u16, usize>,
    /// By `reason`.
    reasons: HashMap<String, usize>,
    /// By `policy_version`.
    versions: HashMap<String, usize>,
    /// Denials by principal, action, resource and route.
    denied_principals: HashMap<String, usize>,
    /// See `denied_principals`.
    denied_actions: HashMap<String, usize>,
    /// See `denied_principals`.
    denied_resources: HashMap<String, usize>,
    /// See `denied_principals`.
    denied_routes: HashMap<String, usize>,
    /// Denials decided before a principal existed, by reason.
    denied_unmapped: HashMap<String, usize>,
    /// Every `latency_us`.
    latencies: Vec<u64>,
    /// Records with a shadow evaluation, by candidate version.
    shadow_versions: HashMap<String, usize>,
    /// Shadow disagreements where the candidate would allow.
    shadow_would_allow: usize,
    /// Shadow disagreements where the candidate would deny.
    shadow_would_deny: usize,
}

impl Summary {
    fn add(&mut self, r: &DecisionRecord) {
        self.total += 1;
        if self.first.as_ref().is_none_or(|f| r.time < *f) {
            self.first = Some(r.time.clone());
        }
        if self.last.as_ref().is_none_or(|l| r.time > *l) {
            self.last = Some(r.time.clone());
        }
        *self.decisions.entry(r.decision.clone()).or_default() += 1;
        *self.statuses.entry(r.status).or_default() += 1;
        *self.reasons.entry(r.reason.clone()).or_default() += 1;
        *self.versions.entry(r.policy_version.clone()).or_default() += 1;
        self.latencies.push(r.latency_us);
        if let Some(shadow) = &r.shadow {
            *self
                .shadow_versions
                .entry(shadow.policy_version.clone())
                .or_default() += 1;
            match (shadow.agrees, shadow.decision.as_str()) {
                (true, _) => {}
                (false, "allow") => self.shadow_would_allow += 1,
                (false, _) => self.shadow_would_deny += 1,
            }
        }
        if r.decision != "deny" {
            return;
        }
        match &r.principal {
            Some(p) => *self.denied_principals.entry(p.clone()).or_default() += 1,
            None => *self.denied_unmapped.entry(r.reason.clone()).or_default() += 1,
        }
        for (value, counts) in [
            (&r.action, &mut self.denied_actions),
            (&r.resource, &mut self.denied_resources),
            (&r.route, &mut self.denied_routes),
        ] {
            if let Some(v) = value {
                *counts.entry(v.clone()).or_default() += 1;
            }
        }
    }

    fn render(&self, top: usize) -> String {
        let mut s = String::new();
        if self.total == 0 {
            s.push_str("no matching records\n");
            return s;
        }
        let pct = |n: usize| 100.0 * n as f64 / self.total as f64;
        s.push_str(&format!(
            "records      {} from {} to {}\n",
            self.total,
            self.first.as_deref().unwrap_or("?"),
            self.last.as_deref().unwrap_or("?")
        ));
        let decisions: Vec<String> = self
            .decisions
            .iter()
            .map(|(d, n)| format!("{d} {n} ({:.1}%)", pct(*n)))
            .collect();
        s.push_str(&format!("decisions    {}\n", decisions.join(", ")));
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        s.push_str(&format!("statuses     {}\n", statuses.join(", ")));
        let versions: Vec<String> = ranked(&self.versions)
            .into_iter()
            .map(|(v, n)| format!("{v} ({n})"))
            .collect();
        s.push_str(&format!("policy sets  {}\n", versions.join(", ")));
        s.push_str(&format!("latency      {}\n", percentiles(&self.latencies)));
        if !self.shadow_versions.is_empty() {
            let evaluated: usize = self.shadow_versions.values().sum();
            let versions: Vec<String> = ranked(&self.shadow_versions)
                .into_iter()
                .map(|(v, n)| format!("{v} ({n})"))
                .collect();
            s.push_str(&format!(
                "shadow       {evaluated} evaluated against {}: {} disagree ({} would allow, {} would deny)\n",
                versions.join(", "),
                self.shadow_would_allow + self.shadow_would_deny,
                self.shadow_would_allow,
                self.shadow_would_deny
            ));
        }
        s.push_str("reasons\n");
        for (reason, n) in ranked(&self.reasons) {
            s.push_str(&format!("  {n:>8}  {:>5.1}%  {reason}\n", pct(n)));
        }
        let denied = self.decisions.get("deny").copied().unwrap_or(0);
        if denied == 0 {
            s.push_str("no denials\n");
            return s;
        }
        for (title, counts) in [
            ("top denied principals", &self.denied_principals),
            ("top denied actions", &self.denied_actions),
            ("top denied resources", &self.denied_resources),
            ("top denied routes", &self.denied_routes),
        ] {
            if counts.is_empty() {
                continue;
            }
            s.push_str(&format!("{title}\n"));
            for (value, n) in ranked(counts).into_iter().take(top) {
                s.push_str(&format!("  {n:>8}  {value}\n"));
            }
        }
        if !self.denied_unmapped.is_empty() {
            let total: usize = self.denied_unmapped.values().sum();
            let reasons: Vec<String> = ranked(&self.denied_unmapped)
                .into_iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            s.push_str(&format!(
                "denied before a principal was known: {total} ({})\n",
                reasons.join(", ")
            ));
        }
        s
    }
}

/// Counts, largest first, ties by name: a stable order for reports and golden files.
fn ranked(counts: &HashMap<String, usize>) -> Vec<(&str, usize)> {
    let mut v: Vec<(&str, usize)> = counts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v
}

/// `p50 41us, p90 88us, p99 310us, max 2210us` (nearest-rank percentiles). Exact over the
/// records read (sorted once), which `hdrhistogram` would only approximate; a summary reads a
/// bounded file, so memory is the records' own.
fn percentiles(latencies: &[u64]) -> String {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let at = |p: usize| -> u64 {
        let rank = (p * sorted.len()).div_ceil(100).max(1);
        sorted.get(rank - 1).copied().unwrap_or(0)
    };
    format!(
        "p50 {}us, p90 {}us, p99 {}us, max {}us",
        at(50),
        at(90),
        at(99),
        sorted.last().copied().unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(
            percentiles(&values),
            "p50 50us, p90 90us, p99 99us, max 100us"
        );
        assert_eq!(percentiles(&[7]), "p50 7us, p90 7us, p99 7us, max 7us");
        assert_eq!(percentiles(&[]), "p50 0us, p90 0us, p99 0us, max 0us");
    }

    #[test]
    fn refused_requests_show_what_they_asked_for() {
        let refused = r#"{"v":1,"time":"t","decision_id":"d","decision":"deny","status":403,"reason":"no_route","mode":"enforce","request":{"method":"GET","host":"h","path":"/nowhere"},"policies":[],"errors":[],"latency_us":5,"policy_version":"p"}"#;
        let record: DecisionRecord = serde_json::from_str(refused).unwrap();
        assert!(
            line(&record).ends_with(" - GET /nowhere 5us id=d"),
            "{}",
            line(&record)
        );
        // Records written before `request` existed still read, and show `-`.
        let old = refused.replace(
            r#""request":{"method":"GET","host":"h","path":"/nowhere"},"#,
            "",
        );
        let record: DecisionRecord = serde_json::from_str(&old).unwrap();
        assert!(line(&record).ends_with(" - 5us id=d"), "{}", line(&record));
    }
}
