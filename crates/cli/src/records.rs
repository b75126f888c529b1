//! Reading decision records back, for `logs` and `replay`: JSON Lines from files or stdin
//! (including a live file followed across rotation), checked against the record format version,
//! and the filters both commands share.
//!
//! Readers follow the contract in `docs/decision-log.md`: unknown fields are ignored, a record
//! with another `v` is skipped and counted (never guessed at), and a line that is not a record is
//! reported with its file and line number, never silently dropped. Nothing here writes anywhere
//! but the report streams it is given.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use cedargate_core::record::{DecisionRecord, RECORD_VERSION};

/// How often `--follow` looks for new lines and for rotation. Short enough to feel live, long
/// enough to cost nothing on an idle log.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Unreadable lines reported one by one before only counting them: a wrong file would otherwise
/// flood the terminal.
const MAX_REPORTED_BAD_LINES: usize = 5;

/// Why records could not be read (as opposed to lines that are not records, which are counted).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file (`-` for stdin).
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
}

fn io(path: &str) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.to_string(),
        source,
    }
}

/// Which records to keep. Several values of one filter are alternatives; different filters must
/// all hold.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only `allow` or `deny` decisions.
    #[arg(long, value_parser = ["allow", "deny"])]
    pub decision: Option<String>,
    /// Only this HTTP status (200, 401, 403; repeatable).
    #[arg(long)]
    pub status: Vec<u16>,
    /// Only this reason code (`no_permit`, `forbid`, `token_expired`, …; repeatable).
    #[arg(long)]
    pub reason: Vec<String>,
    /// Only this principal: `User::"alice"`, a bare id (`alice`), or a pattern with `*`
    /// (`Service::*`); repeatable.
    #[arg(long)]
    pub principal: Vec<String>,
    /// Only this action: `GET /orders/{id}`, `Action::"GET /orders/{id}"` or a pattern
    /// (`DELETE *`); repeatable.
    #[arg(long)]
    pub action: Vec<String>,
    /// Only this resource: `Service::"orders"`, `orders` or a pattern; repeatable.
    #[arg(long)]
    pub resource: Vec<String>,
    /// Only decisions this policy determined (an id or a pattern; repeatable).
    #[arg(long)]
    pub policy: Vec<String>,
    /// Only records at or after this time: RFC 3339 (`2026-11-30T13:00:00Z`) or a duration ago
    /// (`15m`, `2h`, `1day`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only records before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only records whose shadow (candidate) policy set decided otherwise.
    #[arg(long)]
    pub disagreements: bool,
}

/// [`FilterArgs`] with times resolved, ready to test records.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The arguments.
    args: FilterArgs,
    /// Resolved `--since`.
    since: Option<SystemTime>,
    /// Resolved `--until`.
    until: Option<SystemTime>,
}

impl Filter {
    /// Resolves the time bounds against `now`; the error says which flag is wrong.
    pub fn new(args: &FilterArgs, now: SystemTime) -> Result<Filter, String> {
        let since = args
            .since
            .as_deref()
            .map(|t| parse_time(t, now).map_err(|e| format!("--since `{t}`: {e}")))
            .transpose()?;
        let until = args
            .until
            .as_deref()
            .map(|t| parse_time(t, now).map_err(|e| format!("--until `{t}`: {e}")))
            .transpose()?;
        Ok(Filter {
            args: args.clone(),
            since,
            until,
        })
    }

    /// Whether `record` passes every filter.
    pub fn matches(&self, record: &DecisionRecord) -> bool {
        let a = &self.args;
        if a.decision.as_ref().is_some_and(|d| *d != record.decision) {
            return false;
        }
        if !a.status.is_empty() && !a.status.contains(&record.status) {
            return false;
        }
        if !a.reason.is_empty() && !a.reason.contains(&record.reason) {
            return false;
        }
        let entity = |patterns: &[String], value: &Option<String>| {
            patterns.is_empty()
                || value
                    .as_deref()
                    .is_some_and(|v| patterns.iter().any(|p| entity_matches(p, v)))
        };
        if !entity(&a.principal, &record.principal)
            || !entity(&a.action, &record.action)
            || !entity(&a.resource, &record.resource)
        {
            return false;
        }
        if !a.policy.is_empty()
            && !record
                .policies
                .iter()
                .any(|p| a.policy.iter().any(|pattern| glob(pattern, &p.id)))
        {
            return false;
        }
        if a.disagreements && record.shadow.as_ref().is_none_or(|s| s.agrees) {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(time) = record_time(record) else {
                return false;
            };
            if self.since.is_some_and(|s| time < s) || self.until.is_some_and(|u| time >= u) {
                return false;
            }
        }
        true
    }
}

/// A record's `time`, parsed.
pub fn record_time(record: &DecisionRecord) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(&record.time).ok()
}

/// `--since`/`--until`: an RFC 3339 timestamp, or a duration before `now`.
fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    match humantime::parse_duration(text) {
        Ok(d) => now
            .checked_sub(d)
            .ok_or_else(|| "reaches back before 1970".to_string()),
        Err(_) => {
            Err("not an RFC 3339 time (2026-11-30T13:00:00Z) nor a duration (15m, 2h)".into())
        }
    }
}

/// A principal/action/resource pattern against Cedar's printed form (`User::"alice"`): the
/// whole form, or, for a pattern without `::`, the id alone. `*` matches any run of characters.
pub fn entity_matches(pattern: &str, printed: &str) -> bool {
    if glob(pattern, printed) {
        return true;
    }
    !pattern.contains("::") && entity_id(printed).is_some_and(|id| glob(pattern, &id))
}

/// The id of `Type::"id"` (unescaped), if `printed` has that form.
pub fn entity_id(printed: &str) -> Option<String> {
    let (_, quoted) = printed.split_once("::\"")?;
    serde_json::from_str::<String>(&format!("\"{quoted}")).ok()
}

/// Glob match where `*` is the only special character. Hand-written rather than `globset`:
/// filters match policy ids and entity names (not paths), where `?`, `[...]` and `**` would make
/// `User::"a?"`-style ids surprising, and this is the whole of it (tested below).
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*` at all: the whole text must equal the pattern.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

impl Input {
    /// Inputs from command-line arguments: `-` is stdin; none means stdin.
    pub fn from_args(paths: &[PathBuf]) -> Vec<Input> {
        if paths.is_empty() {
            return vec![Input::Stdin];
        }
        paths
            .iter()
            .map(|p| {
                if p.as_os_str() == "-" {
                    Input::Stdin
                } else {
                    Input::File(p.clone())
                }
            })
            .collect()
    }

    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "-".into(),
            Input::File(p) => p.display().to_string(),
        }
    }
}

/// A decision log file and its rotated predecessors (`path.N` … `path.1`), oldest first: what
/// `replay` reads when it takes the log from the config.
pub fn with_rotated(path: &Path) -> Vec<PathBuf> {
    let mut rotated = Vec::new();
    for n in 1.. {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        let candidate = PathBuf::from(name);
        if !candidate.is_file() {
            break;
        }
        rotated.push(candidate);
    }
    rotated.reverse();
    rotated.push(path.to_path_buf());
    rotated
}

/// What a line turned out to be.
#[derive(Debug)]
pub enum Line {
    /// A record of the version this build reads.
    Record(Box<DecisionRecord>),
    /// A record of another version.
    OtherVersion(u64),
    /// Not a decision record.
    Unreadable(String),
}

/// Reads one line as a record.
pub fn parse_line(line: &str) -> Line {
    match serde_json::from_str::<DecisionRecord>(line) {
        Ok(record) if u64::from(record.v) == u64::from(RECORD_VERSION) => {
            Line::Record(Box::new(record))
        }
        Ok(record) => Line::OtherVersion(u64::from(record.v)),
        Err(e) => match serde_json::from_str::<Value>(line) {
            Ok(v) => match v.get("v").and_then(Value::as_u64) {
                Some(version) if version != u64::from(RECORD_VERSION) => {
                    Line::OtherVersion(version)
                }
                _ => Line::Unreadable(format!("not a v{RECORD_VERSION} decision record: {e}")),
            },
            Err(e) => Line::Unreadable(format!("not JSON: {e}")),
        },
    }
}

/// Counts of lines that were not used, with the first few problems for the report.
#[derive(Debug, Default)]
pub struct Skipped {
    /// Lines that are not records.
    pub unreadable: usize,
    /// Records of another format version, by version.
    pub other_versions: std::collections::BTreeMap<u64, usize>,
    /// `file:line: problem`, for the first [`MAX_REPORTED_BAD_LINES`] unreadable lines.
    pub examples: Vec<String>,
}

impl Skipped {
    fn note(&mut self, source: &str, number: usize, line: &Line) {
        match line {
            Line::Record(_) => {}
            Line::OtherVersion(v) => *self.other_versions.entry(*v).or_default() += 1,
            Line::Unreadable(why) => {
                self.unreadable += 1;
                if self.examples.len() < MAX_REPORTED_BAD_LINES {
                    self.examples.push(format!("{source}:{number}: {why}"));
                }
            }
        }
    }

    /// Warning lines for the report (empty when every line was a record).
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .examples
            .iter()
            .map(|e| format!("warning: {e}"))
            .collect();
        if self.unreadable > self.examples.len() {
            out.push(format!(
                "warning: {} more lines are not decision records",
                self.unreadable - self.examples.len()
            ));
        }
        for (version, n) in &self.other_versions {
            let why = if *version > u64::from(RECORD_VERSION) {
                "written by a newer cedargate"
            } else {
                "an older format"
            };
            out.push(format!(
                "warning: skipped {n} records of format v{version} ({why}; this build reads v{RECORD_VERSION})"
            ));
        }
        out
    }
}

/// Reads every input to its end, handing each record (and its raw line) to `each`. Lines that
/// are not records are counted in `skipped`. `each` returns `false` to stop early.
pub fn read_all(
    inputs: &[Input],
    skipped: &mut Skipped,
    each: &mut dyn FnMut(DecisionRecord, &str) -> bool,
) -> Result<(), ReadError> {
    for input in inputs {
        let name = input.name();
        let reader: Box<dyn Read> = match input {
            Input::Stdin => Box::new(std::io::stdin().lock()),
            Input::File(path) => Box::new(File::open(path).map_err(io(&name))?),
        };
        let mut reader = BufReader::new(reader);
        let mut buffer = Vec::new();
        let mut number = 0;
        loop {
            buffer.clear();
            let n = reader.read_until(b'\n', &mut buffer).map_err(io(&name))?;
            if n == 0 {
                break;
            }
            number += 1;
            if !handle(&buffer, &name, number, skipped, each) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One raw line: blank lines are ignored, the rest parsed and handed on.
fn handle(
    raw: &[u8],
    source: &str,
    number: usize,
    skipped: &mut Skipped,
    each: &mut dyn FnMut(DecisionRecord, &str) -> bool,
) -> bool {
    let Ok(text) = std::str::from_utf8(raw) else {
        skipped.note(source, number, &Line::Unreadable("not UTF-8".into()));
        return true;
    };
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return true;
    }
    match parse_line(text) {
        Line::Record(record) => each(*record, text),
        other => {
            skipped.note(source, number, &other);
            true
        }
    }
}

/// Follows a live log file like `tail -F`: reads what is there, then keeps reading what is
/// appended. When the file is rotated (renamed away and recreated, the inode under the path
/// changes) it finishes the old file and continues with the new one from its start; when the
/// file is truncated in place it starts over. Runs until `each` returns `false` or `stop` says so
/// (checked every [`FOLLOW_POLL`]).
pub fn follow(
    path: &Path,
    skipped: &mut Skipped,
    stop: &dyn Fn() -> bool,
    each: &mut dyn FnMut(DecisionRecord, &str) -> bool,
) -> Result<(), ReadError> {
    let name = path.display().to_string();
    let Some(opened) = open_when_present(path, stop).map_err(io(&name))? else {
        return Ok(());
    };
    let mut current = Followed::new(opened).map_err(io(&name))?;
    let mut number = 0;
    loop {
        // Everything complete that is there now.
        for line in current.complete_lines().map_err(io(&name))? {
            number += 1;
            if !handle(&line, &name, number, skipped, each) {
                return Ok(());
            }
        }
        if stop() {
            return Ok(());
        }
        match std::fs::metadata(path) {
            Ok(meta) if (meta.dev(), meta.ino()) != current.id => {
                // Rotated: the writer renamed our file away and started a new one. Read what it
                // wrote to the old file before the rename (a last line included), then switch.
                for line in current.complete_lines().map_err(io(&name))? {
                    number += 1;
                    if !handle(&line, &name, number, skipped, each) {
                        return Ok(());
                    }
                }
                if let Some(rest) = current.unterminated() {
                    number += 1;
                    if !handle(&rest, &name, number, skipped, each) {
                        return Ok(());
                    }
                }
                // Not recreated yet (between rename and create): try again on the next poll.
                if let Ok(f) = File::open(path) {
                    // Several rotations since the last poll: files rotated after ours, which
                    // we never opened, sit between it and the live file.
                    for missed in rotated_after(path, current.id) {
                        let missed_name = missed.display().to_string();
                        let Ok(file) = File::open(&missed) else {
                            continue;
                        };
                        let mut reader = BufReader::new(file);
                        let mut buffer = Vec::new();
                        let mut missed_number = 0;
                        while reader
                            .read_until(b'\n', &mut buffer)
                            .map_err(io(&missed_name))?
                            > 0
                        {
                            missed_number += 1;
                            if !handle(&buffer, &missed_name, missed_number, skipped, each) {
                                return Ok(());
                            }
                            buffer.clear();
                        }
                    }
                    current = Followed::new(f).map_err(io(&name))?;
                    number = 0;
                    continue;
                }
            }
            Ok(meta) if meta.len() < current.position => {
                // Truncated in place (copytruncate): start over.
                current.restart().map_err(io(&name))?;
                number = 0;
                continue;
            }
            // Same file, or the path is gone for a moment (between rename and create).
            _ => {}
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// Rotated files (`path.N` … `path.1`, oldest first) newer than the file with `id`: those that
/// were rotated out after it. Empty when that file is not among them (it was `path.1`, or it is
/// gone past `keep`).
fn rotated_after(path: &Path, id: (u64, u64)) -> Vec<PathBuf> {
    let mut newer = Vec::new();
    for n in 1.. {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        let candidate = PathBuf::from(name);
        match std::fs::metadata(&candidate) {
            Ok(meta) if (meta.dev(), meta.ino()) == id => {
                newer.reverse();
                return newer;
            }
            Ok(_) => newer.push(candidate),
            Err(_) => return Vec::new(),
        }
    }
    Vec::new()
}

/// Waits for `path` to exist (a log that hasn't been written yet), unless `stop` says to give up.
fn open_when_present(path: &Path, stop: &dyn Fn() -> bool) -> std::io::Result<Option<File>> {
    loop {
        match File::open(path) {
            Ok(f) => return Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if stop() {
                    return Ok(None);
                }
                std::thread::sleep(FOLLOW_POLL);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A file being followed: where we are, and a line begun but not yet finished by the writer.
struct Followed {
    /// The open file.
    file: File,
    /// Device and inode, to notice rotation.
    id: (u64, u64),
    /// Bytes consumed so far (complete lines plus `partial`).
    position: u64,
    /// Bytes after the last newline: the writer is mid-line.
    partial: Vec<u8>,
}

impl Followed {
    fn new(file: File) -> std::io::Result<Followed> {
        let meta = file.metadata()?;
        Ok(Followed {
            file,
            id: (meta.dev(), meta.ino()),
            position: 0,
            partial: Vec::new(),
        })
    }

    /// Lines completed since the last call.
    fn complete_lines(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut chunk = Vec::new();
        let n = self.file.read_to_end(&mut chunk)?;
        self.position += n as u64;
        self.partial.extend_from_slice(&chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let rest = self.partial.split_off(end + 1);
            lines.push(std::mem::replace(&mut self.partial, rest));
        }
        Ok(lines)
    }

    /// A last line the writer never finished (only read when leaving a rotated file).
    fn unterminated(&mut self) -> Option<Vec<u8>> {
        (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))
    }

    fn restart(&mut self) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.position = 0;
        self.partial.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_strings() {
        for (pattern, text, want) in [
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("*b*", "abc", true),
            ("a*c*e", "abcde", true),
            ("a*c*e", "abcdef", false),
            ("*", "", true),
            ("a*a", "a", false),
            ("", "", true),
        ] {
            assert_eq!(glob(pattern, text), want, "{pattern} vs {text}");
        }
    }

    #[test]
    fn entities_match_by_printed_form_or_id() {
        let alice = r#"User::"alice""#;
        assert!(entity_matches(alice, alice));
        assert!(entity_matches("alice", alice));
        assert!(entity_matches("User::*", alice));
        assert!(entity_matches("al*", alice));
        assert!(!entity_matches("Service::*", alice));
        assert!(!entity_matches("bob", alice));
        let action = r#"Action::"GET /orders/{id}""#;
        assert!(entity_matches("GET /orders/{id}", action));
        assert!(entity_matches("GET *", action));
        assert_eq!(
            entity_id(r#"User::"a\"b""#).as_deref(),
            Some("a\"b"),
            "ids are unescaped"
        );
    }

    #[test]
    fn times_are_timestamps_or_durations_ago() {
        let now = humantime::parse_rfc3339("2026-11-30T13:00:00Z").unwrap_or(SystemTime::now());
        assert_eq!(
            parse_time("2026-11-30T12:00:00Z", now).ok(),
            humantime::parse_rfc3339("2026-11-30T12:00:00Z").ok()
        );
        assert_eq!(
            parse_time("15m", now).ok(),
            humantime::parse_rfc3339("2026-11-30T12:45:00Z").ok()
        );
        assert!(parse_time("yesterday-ish", now).is_err());
    }

    #[test]
    fn lines_are_records_other_versions_or_unreadable() {
        let record = r#"{"v":1,"time":"2026-11-30T13:05:00.000001Z","decision_id":"d","decision":"deny","status":401,"reason":"token_expired","mode":"enforce","policies":[],"errors":[],"latency_us":3,"policy_version":"x","field_from_the_future":true}"#;
        assert!(matches!(parse_line(record), Line::Record(_)));
        let v2 = record.replace(r#""v":1"#, r#""v":2"#);
        assert!(matches!(parse_line(&v2), Line::OtherVersion(2)));
        assert!(matches!(
            parse_line(r#"{"v":2,"entirely":"different"}"#),
            Line::OtherVersion(2)
        ));
        assert!(matches!(parse_line(r#"{"hello":1}"#), Line::Unreadable(_)));
        assert!(matches!(parse_line("level=info"), Line::Unreadable(_)));
    }
}
