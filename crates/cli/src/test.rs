//! `cedargate test`: runs policy test files (see [`case`](crate::case)) through the same
//! decision path as `serve`, prints one block per failing case (with the principal and resource
//! as evaluated, and why each relevant policy did or did not fire), a policy coverage report and
//! a closing `N passed, N failed` line (followed, last, by a `--require-full-coverage` failure);
//! problems in the inputs go to stderr. Optionally writes JUnit XML.
//!
//! Coverage counts, over the whole run, which policies *determined* at least one decision (Cedar's
//! "reason" set: the permits behind an allow, the forbids behind a deny). A policy that never
//! determined anything is either untested or dead; `--require-full-coverage` makes that fail the
//! run. Works offline; never decides anything itself.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cedar_policy::Effect;

use crate::case::{self, Case, TESTS_DIR};
use crate::explain::{self, deciding_lines, describe_decision};
use crate::{CliError, Diagnostic, Reporter, Severity, evaluated, plural};
use cedargate_core::config::Config;
use cedargate_core::decision::Decision;
use cedargate_core::policy::PolicySnapshot;

/// Arguments of `cedargate test`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// Config file.
    #[arg(
        short,
        long,
        env = "CEDARGATE_CONFIG",
        default_value = "cedargate.yaml"
    )]
    pub config: PathBuf,
    /// Test files, or folders searched for `*.yaml`/`*.yml` (default: `<policy_dir>/tests/`).
    pub paths: Vec<PathBuf>,
    /// Also write the results as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Fail the run when a policy determined no decision in any case.
    #[arg(long)]
    pub require_full_coverage: bool,
    /// Print passing cases and per-policy decision counts too.
    #[arg(short, long)]
    pub verbose: bool,
    /// `text` (failure blocks, coverage, the tally) or `json` (one JSON document on stdout:
    /// `ok`, `passed`, `failed`, every case, the problems found, coverage).
    #[arg(long, value_enum, default_value_t = crate::validate::Format::Text)]
    pub format: crate::validate::Format,
}

/// The result of one case.
struct CaseResult {
    /// File it came from.
    file: PathBuf,
    /// Its name.
    name: String,
    /// Its line.
    line: usize,
    /// Empty when it passed.
    mismatches: Vec<String>,
    /// The failure block (empty when it passed).
    report: String,
}

/// Runs the tests; `Ok(true)` when every case passed (and coverage was full, if required).
pub fn run(args: &TestArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool, CliError> {
    let w = CliError::write;
    let mut reporter = Reporter::default();
    let json = args.format == crate::validate::Format::Json;
    let (config, policies) = match crate::load(&args.config) {
        Ok(loaded) => loaded,
        Err(diagnostics) if json => {
            let document = serde_json::json!({
                "ok": false,
                "passed": 0,
                "failed": 0,
                "cases": [],
                "diagnostics": diagnostics.iter().map(Diagnostic::to_json).collect::<Vec<_>>(),
                "coverage": null,
            });
            writeln!(out, "{document}").map_err(w("stdout"))?;
            return Ok(false);
        }
        Err(diagnostics) => {
            write!(err, "{}", reporter.render_all(&diagnostics)).map_err(w("stderr"))?;
            writeln!(
                err,
                "no tests ran: fix the config and policy problems above first (`cedargate validate` lists them)"
            )
            .map_err(w("stderr"))?;
            return Ok(false);
        }
    };
    let (files, mut diagnostics) = crate::test_files::discover(&args.paths, &config);
    // A test file that can't be found or followed is cases not run: the run fails.
    let discovery_failed = diagnostics.iter().any(|d| d.severity == Severity::Error);
    let cx = case::Context {
        config: &config,
        policies: &policies,
        now: SystemTime::now(),
    };

    let mut results = Vec::new();
    let mut broken: Vec<(PathBuf, usize, Vec<Diagnostic>)> = Vec::new();
    let mut determined: BTreeMap<String, usize> = BTreeMap::new();
    for path in &files {
        let (file, problems) = case::read_test_file(path, &cx);
        if file.broken > 0 {
            let errors = problems
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .cloned()
                .collect();
            broken.push((path.clone(), file.broken, errors));
        }
        diagnostics.extend(problems);
        for case in &file.cases {
            let decision = case.decide(&config, &policies);
            for p in &decision.policies {
                *determined.entry(p.id.clone()).or_default() += 1;
            }
            let mismatches = case
                .expect
                .as_ref()
                .map(|e| e.mismatches(&decision))
                .unwrap_or_default();
            let report = if mismatches.is_empty() {
                String::new()
            } else {
                failure_block(&config, case, &decision, &mismatches, &policies)
            };
            results.push(CaseResult {
                file: case.file.clone(),
                name: case.name.clone(),
                line: case.line,
                mismatches,
                report,
            });
        }
    }

    if json {
        let coverage = Coverage::new(&policies, &determined);
        let coverage_failed = args.require_full_coverage && !coverage.uncovered.is_empty();
        let passed = results.iter().filter(|r| r.mismatches.is_empty()).count();
        let broken_cases: usize = broken.iter().map(|(_, n, _)| n).sum();
        let failed = results.len() - passed + broken_cases;
        if let Some(junit) = &args.junit {
            let xml = junit_xml(&results, &broken, &coverage, args.require_full_coverage);
            std::fs::write(junit, xml).map_err(CliError::write(junit.display().to_string()))?;
        }
        let ok = failed == 0 && !results.is_empty() && !coverage_failed && !discovery_failed;
        let document = serde_json::json!({
            "ok": ok,
            "passed": passed,
            "failed": failed,
            "cases": results.iter().map(|r| serde_json::json!({
                "file": r.file.display().to_string(),
                "line": r.line,
                "name": r.name,
                "ok": r.mismatches.is_empty(),
                "mismatches": r.mismatches,
            })).collect::<Vec<_>>(),
            "diagnostics": diagnostics.iter().map(Diagnostic::to_json).collect::<Vec<_>>(),
            "coverage": {
                "policies": coverage.policies.len(),
                "uncovered": coverage.uncovered,
                "required": args.require_full_coverage,
                "failed": coverage_failed,
            },
        });
        writeln!(out, "{document}").map_err(w("stdout"))?;
        return Ok(ok);
    }

    // Problems in the test files are errors (stderr); case results are the report (stdout).
    write!(err, "{}", reporter.render_all(&diagnostics)).map_err(w("stderr"))?;
    for r in &results {
        if r.mismatches.is_empty() {
            if args.verbose {
                writeln!(out, "ok   {}:{}  {}", r.file.display(), r.line, r.name)
                    .map_err(w("the report"))?;
            }
        } else {
            write!(out, "{}", r.report).map_err(w("the report"))?;
        }
    }

    let coverage = Coverage::new(&policies, &determined);
    // With no case run, every policy is "uncovered": say nothing rather than list them all.
    if !results.is_empty() {
        write!(out, "{}", coverage.report(args.verbose)).map_err(w("the report"))?;
    }
    let coverage_failed = args.require_full_coverage && !coverage.uncovered.is_empty();

    let passed = results.iter().filter(|r| r.mismatches.is_empty()).count();
    let broken_cases: usize = broken.iter().map(|(_, n, _)| n).sum();
    let failed = results.len() - passed + broken_cases;
    if let Some(junit) = &args.junit {
        let xml = junit_xml(&results, &broken, &coverage, args.require_full_coverage);
        std::fs::write(junit, xml).map_err(CliError::write(junit.display().to_string()))?;
    }
    if results.is_empty() && broken_cases == 0 {
        writeln!(
            out,
            "no test cases found in {}; add YAML test files there or name them on the command line",
            describe_paths(&args.paths, &config)
        )
        .map_err(w("the report"))?;
        writeln!(out, "0 passed, 0 failed").map_err(w("the report"))?;
        return Ok(false);
    }
    writeln!(out, "{passed} passed, {failed} failed").map_err(w("the report"))?;
    // Last, so a CI log's final line says why a run whose cases all passed still failed.
    if discovery_failed {
        writeln!(
            out,
            "test files: FAILED: some could not be found, read or followed (see the errors), so their cases did not run"
        )
        .map_err(w("the report"))?;
    }
    if coverage_failed {
        writeln!(
            out,
            "coverage: FAILED (--require-full-coverage): every policy must determine at least one decision"
        )
        .map_err(w("the report"))?;
    }
    Ok(failed == 0 && !coverage_failed && !discovery_failed)
}

fn describe_paths(paths: &[PathBuf], config: &Config) -> String {
    if paths.is_empty() {
        config.policy_dir.join(TESTS_DIR).display().to_string()
    } else {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The block printed for a failing case: expected vs got, the deciding policies, the Cedar
/// request, the principal and resource as evaluated (with the source of each parent and
/// attribute), and why each relevant policy did or did not fire.
fn failure_block(
    config: &Config,
    case: &Case,
    decision: &Decision,
    mismatches: &[String],
    policies: &PolicySnapshot,
) -> String {
    let mut s = String::new();
    let expected = case
        .expect
        .as_ref()
        .map(case::Expectation::describe)
        .unwrap_or_default();
    s.push_str(&format!("FAIL {}  {}\n", case.location(), case.name));
    s.push_str(&format!("  expected: {expected}\n"));
    s.push_str(&format!("  got:      {}\n", describe_decision(decision)));
    for m in mismatches {
        s.push_str(&format!("  mismatch: {m}\n"));
    }
    s.push_str(&deciding_lines(decision, policies, "  "));
    if let Some(route) = &decision.route {
        s.push_str(&format!("  route:    {route}\n"));
    }
    for e in &decision.errors {
        s.push_str(&format!("  error:    {e}\n"));
    }
    match &decision.cedar {
        Some(cedar) => {
            s.push_str("  cedar request:\n");
            s.push_str(&indent(&cedar_request_text(cedar), "    "));
            s.push_str(&indent(
                &evaluated::evaluated_entities(config, policies, case.token(), cedar),
                "  ",
            ));
            s.push_str("  why:\n");
            s.push_str(&indent(&explain::why(policies, decision, cedar), "  "));
            if let Some(expected) = case.expect.as_ref().and_then(|e| e.policies.as_deref()) {
                s.push_str(&indent(
                    &explain::expected_not_deciding(policies, decision, cedar, expected),
                    "  ",
                ));
            }
        }
        None => s.push_str("  cedar request: none (decided before mapping)\n"),
    }
    s.push('\n');
    s
}

/// The Cedar request as a policy author reads it (its entities are told by [`evaluated`]).
fn cedar_request_text(cedar: &cedargate_core::mapping::CedarRequest) -> String {
    let pretty =
        |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    format!(
        "principal: {}\naction:    {}\nresource:  {}\ncontext:   {}\n",
        cedar.principal,
        cedar.action,
        cedar.resource,
        indent_tail(&pretty(&cedar.context), "           "),
    )
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

/// Indents every line but the first.
fn indent_tail(text: &str, prefix: &str) -> String {
    let mut lines = text.lines();
    let mut s = lines.next().unwrap_or_default().to_string();
    for l in lines {
        s.push('\n');
        s.push_str(prefix);
        s.push_str(l);
    }
    s
}

/// Which policies determined a decision in the run.
pub struct Coverage {
    /// (id, effect, file, decisions determined), in file then id order.
    pub policies: Vec<(String, Effect, PathBuf, usize)>,
    /// Ids that determined nothing.
    pub uncovered: Vec<String>,
}

impl Coverage {
    fn new(snapshot: &PolicySnapshot, determined: &BTreeMap<String, usize>) -> Coverage {
        let mut policies: Vec<(String, Effect, PathBuf, usize)> = snapshot
            .info
            .iter()
            .map(|(id, info)| {
                (
                    id.clone(),
                    info.effect,
                    info.file.clone(),
                    determined.get(id).copied().unwrap_or(0),
                )
            })
            .collect();
        policies.sort_by(|a, b| (&a.2, &a.0).cmp(&(&b.2, &b.0)));
        let uncovered = policies
            .iter()
            .filter(|p| p.3 == 0)
            .map(|p| p.0.clone())
            .collect();
        Coverage {
            policies,
            uncovered,
        }
    }

    fn report(&self, verbose: bool) -> String {
        let total = self.policies.len();
        let covered = total - self.uncovered.len();
        let percent = (covered * 100).checked_div(total).unwrap_or(100);
        let mut s = format!(
            "coverage: {covered} of {} determined at least one decision ({percent}%)\n",
            plural(total, "policy", "policies")
        );
        for (id, effect, file, count) in &self.policies {
            let effect = if *effect == Effect::Permit {
                "permit"
            } else {
                "forbid"
            };
            if *count == 0 {
                s.push_str(&format!(
                    "  not covered: {effect} {id} ({})\n",
                    file.display()
                ));
            } else if verbose {
                s.push_str(&format!(
                    "  {count:>4} × {effect} {id} ({})\n",
                    file.display()
                ));
            }
        }
        s
    }
}

/// The results as JUnit XML: one `<testsuite>` per test file, plus one for policy coverage.
/// Written by hand rather than with a JUnit crate: the ones on the registry either pull an XML
/// stack larger than this function or model only `<testcase>`, not the coverage suite; the
/// escaping is the only subtle part and has its own test (`xml_escape_*`).
fn junit_xml(
    results: &[CaseResult],
    broken: &[(PathBuf, usize, Vec<Diagnostic>)],
    coverage: &Coverage,
    coverage_required: bool,
) -> String {
    let mut by_file: BTreeMap<&Path, Vec<&CaseResult>> = BTreeMap::new();
    for r in results {
        by_file.entry(&r.file).or_default().push(r);
    }
    for (path, _, _) in broken {
        by_file.entry(path).or_default();
    }
    let total_failures = results.iter().filter(|r| !r.mismatches.is_empty()).count();
    let total_errors: usize = broken.iter().map(|b| b.1).sum();
    let coverage_failures = if coverage_required {
        coverage.uncovered.len()
    } else {
        0
    };
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"cedargate test\" tests=\"{}\" failures=\"{}\" errors=\"{}\">\n",
        results.len() + total_errors + coverage.policies.len(),
        total_failures + coverage_failures,
        total_errors
    ));
    for (path, cases) in &by_file {
        let file = path.display().to_string();
        let errors = broken.iter().find(|b| b.0 == *path).map(|b| (b.1, &b.2));
        let failures = cases.iter().filter(|r| !r.mismatches.is_empty()).count();
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{}\">\n",
            xml_escape(&file),
            cases.len() + errors.map_or(0, |e| e.0),
            errors.map_or(0, |e| e.0)
        ));
        for r in cases {
            x.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\"",
                xml_escape(&r.name),
                xml_escape(&file),
                xml_escape(&file),
                r.line
            ));
            if r.mismatches.is_empty() {
                x.push_str("/>\n");
            } else {
                x.push_str(&format!(
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml_escape(&r.mismatches.join("; ")),
                    xml_escape(&r.report)
                ));
            }
        }
        if let Some((count, diagnostics)) = errors {
            let text: Vec<String> = diagnostics.iter().map(Diagnostic::one_line).collect();
            x.push_str(&format!(
                "    <testcase name=\"{} broken case(s)\" classname=\"{}\" file=\"{}\">\n      <error message=\"{}\">{}</error>\n    </testcase>\n",
                count,
                xml_escape(&file),
                xml_escape(&file),
                xml_escape(text.first().map_or("", String::as_str)),
                xml_escape(&text.join("\n"))
            ));
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str(&format!(
        "  <testsuite name=\"policy coverage\" tests=\"{}\" failures=\"{coverage_failures}\" errors=\"0\">\n",
        coverage.policies.len()
    ));
    for (id, _, file, count) in &coverage.policies {
        let file = file.display().to_string();
        x.push_str(&format!(
            "    <testcase name=\"{}\" classname=\"coverage\" file=\"{}\"",
            xml_escape(id),
            xml_escape(&file)
        ));
        match (*count, coverage_required) {
            (0, true) => x.push_str(
                ">\n      <failure message=\"determined no decision in any case\"/>\n    </testcase>\n",
            ),
            (0, false) => x.push_str(
                ">\n      <skipped message=\"determined no decision in any case\"/>\n    </testcase>\n",
            ),
            _ => x.push_str("/>\n"),
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// Escapes text for XML attributes and content; drops characters XML 1.0 can't carry.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escape_covers_markup_and_control_characters() {
        assert_eq!(
            xml_escape("a<b>&\"c\"'\u{1}\n"),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;\n"
        );
    }
}
