//! The policy author's commands: `validate`, `test`, `check` and `schema`, one file each, plus the
//! policy test file format ([`case`]) that `validate`, `test` and `check` share, the explanation
//! of a decision ([`explain`]) and of the entities it read ([`evaluated`]) that `check` and `test`
//! share, and where each entity type's data comes from ([`sources`], for `validate`); and the
//! decision log's readers, `logs` and `replay`, with the record reading and filters they share
//! ([`records`]); and `bundle` (build, sign, verify signed policy bundles, make keys).
//!
//! Everything here runs offline: no IdP, no Envoy, no sockets. A test case or a `check` request
//! goes through the same [`identity::without_token`](cedargate_core::identity::without_token),
//! [`mapping`](cedargate_core::mapping) and [`decision::prepare`](cedargate_core::decision::prepare) /
//! [`Prepared::decide`](cedargate_core::decision::Prepared::decide) as `serve`, with the entity provider's
//! answers stated by the case handed over through
//! [`Prepared::set_fetched`](cedargate_core::decision::Prepared::set_fetched); this module only builds the
//! inputs (an [`HttpRequest`](cedargate_core::request::HttpRequest), an identity from stated claims, the
//! provider's answers) and prints the outcome. It never decides anything itself.
//!
//! Problems in files are [`Diagnostic`]s, rendered with file:line:column and a snippet with a
//! caret. Failing to write output is a [`CliError`]; `anyhow` stays in `main.rs`.

pub mod apikey;
pub mod bundle;
pub mod case;
pub mod check;
pub mod evaluated;
pub mod explain;
pub mod logs;
pub mod records;
pub mod replay;
pub mod schema;
pub mod sources;
pub mod test;
pub mod test_files;
pub mod validate;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};

use cedargate_core::config::{Config, ConfigError};
use cedargate_core::policy::{PolicyLoadError, PolicySnapshot};

/// Why a command could not finish (as opposed to finding problems, which it reports).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Writing the report (stdout, a JUnit file) failed.
    #[error("cannot write {what}: {source}")]
    Write {
        /// What was being written.
        what: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// Decision records could not be read.
    #[error(transparent)]
    Records(#[from] records::ReadError),
    /// The arguments contradict each other or don't parse.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    fn write(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Write { what, source }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Makes the command fail.
    Error,
    /// Printed; the command still succeeds.
    Warning,
}

/// One problem in one file, positioned when the position is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// What is wrong and, where we can tell, what would be right.
    pub message: String,
}

impl Diagnostic {
    /// An error at a position.
    pub fn error(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A warning at a position.
    pub fn warning(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, line, column, message)
        }
    }

    /// `file:line:column` (or just `file`).
    pub fn location(&self) -> String {
        if self.line > 0 {
            format!("{}:{}:{}", self.file.display(), self.line, self.column)
        } else {
            self.file.display().to_string()
        }
    }

    /// As one JSON object, for `--format json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "severity": level_name(self.severity),
            "file": self.file.display().to_string(),
            "line": self.line,
            "column": self.column,
            "message": self.message,
        })
    }

    /// The one-line form: `file:line:col: error: message`.
    pub fn one_line(&self) -> String {
        format!(
            "{}: {}: {}",
            self.location(),
            level_name(self.severity),
            self.message
        )
    }
}

fn level_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// Diagnostics for a config that did not load.
pub fn config_diagnostics(error: &ConfigError) -> Vec<Diagnostic> {
    match error {
        ConfigError::Read { path, error } => {
            vec![Diagnostic::error(
                path,
                0,
                0,
                format!(
                    "cannot read the config: {}",
                    cedargate_core::config::io_words(error)
                ),
            )]
        }
        ConfigError::Invalid { path, problems } => problems
            .iter()
            .map(|p| {
                Diagnostic::error(
                    path,
                    usize::try_from(p.line).unwrap_or(0),
                    usize::try_from(p.column).unwrap_or(0),
                    without_yaml_prefix(&p.message),
                )
            })
            .collect(),
    }
}

/// A YAML parser message without its own `error: line N column M: ` prefix: the diagnostic
/// already says where.
pub(crate) fn without_yaml_prefix(message: &str) -> String {
    let rest = message.strip_prefix("error: ").unwrap_or(message);
    match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((position, text)) if position.contains(" column ") => text.to_string(),
        _ => message.to_string(),
    }
}

/// Diagnostics for a policy folder that did not load.
pub fn policy_diagnostics(error: &PolicyLoadError) -> Vec<Diagnostic> {
    error
        .0
        .iter()
        .map(|p| Diagnostic::error(&p.file, p.line, p.column, p.message.clone()))
        .collect()
}

/// Loads the config and its policy folder, or says everything that is wrong with them.
pub fn load(config_path: &Path) -> Result<(Config, PolicySnapshot), Vec<Diagnostic>> {
    let config = Config::load(config_path).map_err(|e| config_diagnostics(&e))?;
    let policies = cedargate_core::shapes::load_checked(&config.policy_dir, &config)
        .map_err(|e| policy_diagnostics(&e))?;
    Ok((config, policies))
}

/// Renders diagnostics as `file:line:col` plus a snippet with a caret, reading each file once.
#[derive(Default)]
pub struct Reporter {
    /// File texts by path; `None` when a file can't be read (then no snippet is shown).
    sources: HashMap<PathBuf, Option<String>>,
}

impl Reporter {
    /// One diagnostic, rendered; ends with a newline.
    pub fn render(&mut self, d: &Diagnostic) -> String {
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let path = d.file.display().to_string();
        let source = self
            .sources
            .entry(d.file.clone())
            .or_insert_with(|| std::fs::read_to_string(&d.file).ok());
        let line_text = source
            .as_deref()
            .filter(|_| d.line > 0)
            .and_then(|s| s.lines().nth(d.line - 1))
            .map(mask_user_info);
        let rendered = match line_text.as_deref() {
            Some(text) => {
                // Columns count characters; the snippet wants a byte range within the line.
                let start = text
                    .char_indices()
                    .nth(d.column.saturating_sub(1))
                    .map_or(text.len(), |(i, _)| i);
                let end = text
                    .get(start..)
                    .and_then(|rest| rest.chars().next())
                    .map_or(start, |c| start + c.len_utf8());
                let report = [level.primary_title(&d.message).element(
                    Snippet::source(text)
                        .line_start(d.line)
                        .path(path)
                        .annotation(AnnotationKind::Primary.span(start..end)),
                )];
                Renderer::plain().render(&report)
            }
            None => format!(
                "{}: {}\n  --> {}",
                level_name(d.severity),
                d.message,
                d.location()
            ),
        };
        let mut out = rendered;
        out.push('\n');
        out
    }

    /// Every diagnostic, rendered, errors and warnings in the given order.
    pub fn render_all(&mut self, diagnostics: &[Diagnostic]) -> String {
        let mut out = String::new();
        for d in diagnostics {
            out.push_str(&self.render(d));
        }
        out
    }
}

/// A source line as a snippet may show it: the user info of every URL in it (`scheme://user:pw@`)
/// replaced by `***`, since it may be a password (a config that puts one there is refused, and
/// the refusal must not print it).
fn mask_user_info(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(after.len());
        let (authority, tail) = after.split_at(authority_end);
        match authority.rfind('@') {
            Some(user_end) => {
                out.push_str("***");
                out.push_str(authority.get(user_end..).unwrap_or_default());
            }
            None => out.push_str(authority),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// An error with its `miette` help, on one line.
pub(crate) fn one_line(e: &(dyn miette::Diagnostic + Send + Sync + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(&format!(": {text}"));
        }
        source = inner.source();
    }
    if let Some(help) = e.help() {
        s.push_str(&format!(" ({help})"));
    }
    s.replace('\n', " ")
}

/// `n thing` / `n things`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    let mut s = String::new();
    let _ = write!(s, "{n} {}", if n == 1 { one } else { many });
    s
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    #[test]
    fn snippets_never_show_the_user_info_of_a_url() {
        for (line, shown) in [
            (
                "  - issuer: https://svc:hunter2@idp.example.com/x",
                "  - issuer: https://***@idp.example.com/x",
            ),
            (
                "issuer: http://localhost:80@idp.evil.example",
                "issuer: http://***@idp.evil.example",
            ),
            (
                "a: \"http://u@h\" b: https://h/p@q c: ftp://x:y@z",
                "a: \"http://***@h\" b: https://h/p@q c: ftp://***@z",
            ),
            ("no urls: a@b", "no urls: a@b"),
        ] {
            assert_eq!(super::mask_user_info(line), shown);
        }
    }

    use serde_json::Value;

    use super::*;

    /// Every Cedar request the shipped test cases and the recorded decision log make, through
    /// the policy index and through the whole set: the same decision, determining policies and
    /// errors. Lives here, not in the core: the core can't read policy test files.
    #[test]
    fn indexed_evaluation_equals_the_whole_set_on_shipped_cases_and_records() {
        use crate::case;
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let (config, policies) = crate::load(&repo.join("cedargate.yaml")).unwrap();
        let mut requests = Vec::new();
        let cx = case::Context {
            config: &config,
            policies: &policies,
            now: SystemTime::now(),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(repo.join("policies/tests"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let (file, _) = case::read_test_file(&path, &cx);
            for case in &file.cases {
                let Ok(identity) = case.identity(&config) else {
                    continue;
                };
                if let Ok((cedar, _)) =
                    cedargate_core::mapping::map(&config, &identity, &case.request, case.now)
                {
                    requests.push(cedar);
                }
            }
        }
        let cases = requests.len();
        let recorded =
            std::fs::read_to_string(repo.join("tests/fixtures/decision-logs/recorded.jsonl"))
                .unwrap();
        for line in recorded.lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            if let Some(cedar) = record.get("cedar") {
                requests.push(serde_json::from_value(cedar.clone()).unwrap());
            }
        }
        assert!(
            cases > 30 && requests.len() > cases + 10,
            "{cases} {}",
            requests.len()
        );
        let mut fewer = 0;
        for cedar in &requests {
            let indexed = policies.evaluate(cedar).map_err(|e| e.to_string());
            let whole = policies
                .evaluate_unindexed(cedar)
                .map_err(|e| e.to_string());
            assert_eq!(indexed, whole, "{cedar:?}");
            if policies
                .indexed_policy_count(cedar)
                .is_some_and(|n| n < policies.info.len())
            {
                fewer += 1;
            }
        }
        assert_eq!(fewer, requests.len(), "every shipped request is indexed");
    }

    #[test]
    fn diagnostics_render_with_a_snippet_and_a_caret() {
        let dir = std::env::temp_dir().join(format!("cedargate-reporter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("p.cedar");
        std::fs::write(&file, "// x\npermit (principal action, resource);\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let d = Diagnostic::error(&file, 2, 19, "unexpected token `action`");
        let rendered = Reporter::default().render(&d);
        let expected = format!(
            "error: unexpected token `action`\n --> {}:2:19\n  |\n2 | permit (principal action, resource);\n  |                   ^\n",
            file.display()
        );
        assert_eq!(rendered, expected);
        let whole = Diagnostic::warning(&file, 0, 0, "whole file");
        assert_eq!(
            Reporter::default().render(&whole),
            format!("warning: whole file\n  --> {}\n", file.display())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn yaml_position_prefixes_are_dropped() {
        assert_eq!(
            without_yaml_prefix("error: line 8 column 1: unknown field `relam`"),
            "unknown field `relam`"
        );
        assert_eq!(without_yaml_prefix("plain: text"), "plain: text");
    }
}
