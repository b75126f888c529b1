//! `cedargate replay`: re-evaluates recorded decisions against a candidate policy set and reports
//! what would change, grouped, escalations (deny → allow) first, each group with an example
//! record. Exit status for CI: 0 when nothing named by `--fail-on` happened, 1 when something did,
//! 2 when the replay could not run (config, baseline or candidate policies do not load, a log
//! can't be read).
//!
//! The candidate folder is checked as a folder ([`cedargate_core::policy_folder::check`]) and
//! loaded with [`PolicySnapshot::load`], which validates its policies
//! against its schema (strict), and every replayed request is checked against that schema before
//! it is evaluated, so a record the candidate was not written for (an action it no longer
//! declares, a context attribute of another type) is reported as such rather than as a mere
//! flip. Evaluation is [`decision::evaluate`], the policy half of what `serve` runs, on the
//! `cedar` request stored in the record. The config's own policy folder is replayed too, for the
//! records it produced, to prove that the records reproduce (redacted claims, for instance, can
//! make them inexact). Entities the provider answered are in the record (`cedar.fetched`) and are
//! evaluated again; a record denied because the provider failed (`entities_unavailable`, nothing
//! fetched) is not replayable, like one decided before the policies. Neither is a record whose
//! Cedar request had a header value cut (`decision_log.max_header_value_bytes`, listed in its
//! `truncated`): Cedar evaluated the whole value, the record keeps a prefix, so evaluating it
//! again could report a change (or an irreproducible record) that isn't one; such records are
//! counted and shown apart. Offline: no keys, no sockets.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::SystemTime;

use cedar_policy::{Context, Entities, EntityId, EntityTypeName, EntityUid, Request, Schema};
use serde::Serialize;
use serde_json::Value;

use crate::records::{self, Filter, FilterArgs, Input, Skipped};
use crate::{CliError, Reporter};
use cedargate_core::config::LogOutput;
use cedargate_core::decision::{self, Decision};
use cedargate_core::mapping::{CedarRequest, EntityRef};
use cedargate_core::policy::PolicySnapshot;
use cedargate_core::record::DecisionRecord;

/// Example records shown per group unless `--examples` says otherwise.
const DEFAULT_EXAMPLES: usize = 1;

/// Arguments of `cedargate replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Config file: its policy folder is the baseline, its decision log the default input.
    #[arg(
        short,
        long,
        env = "CEDARGATE_CONFIG",
        default_value = "cedargate.yaml"
    )]
    pub config: PathBuf,
    /// The candidate policy folder (`*.cedar`, `*.cedarschema`, `entities.json`).
    #[arg(long, value_name = "DIR")]
    pub policies: PathBuf,
    /// Decision-log files; `-` reads stdin. Default: the config's `decision_log.path` with its
    /// rotated files, oldest first.
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// What fails the run (exit 1), comma-separated: `escalation` (deny → allow),
    /// `restriction` (allow → deny), `flip` (either), `change` (any difference, including the
    /// reason, status or deciding policies), `schema` (a record the candidate schema rejects),
    /// `never`.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "escalation",
        value_name = "WHAT"
    )]
    pub fail_on: Vec<FailOn>,
    /// Example records shown per group.
    #[arg(long, default_value_t = DEFAULT_EXAMPLES, value_name = "N")]
    pub examples: usize,
    /// Print the report as one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What makes a replay fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailOn {
    /// A recorded deny would be allowed.
    Escalation,
    /// A recorded allow would be denied.
    Restriction,
    /// Either.
    Flip,
    /// Any difference in decision, status, reason or deciding policies.
    Change,
    /// A record does not conform to the candidate schema.
    Schema,
    /// Nothing: report only.
    Never,
}

/// How a replay ended; [`ReplayStatus::code`] is the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayStatus {
    /// Nothing named by `--fail-on` happened.
    Pass,
    /// Something named by `--fail-on` happened.
    Fail,
    /// The replay could not run; the reason has been printed.
    CannotReplay,
}

impl ReplayStatus {
    /// 0, 1 or 2.
    pub fn code(self) -> u8 {
        match self {
            ReplayStatus::Pass => 0,
            ReplayStatus::Fail => 1,
            ReplayStatus::CannotReplay => 2,
        }
    }
}

/// How a replayed decision compares with the recorded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// deny → allow: the change a security review must see first.
    Escalation,
    /// allow → deny: someone loses access.
    Restriction,
    /// Same decision; another status, reason, set of deciding policies, or new errors.
    Changed,
    /// The same outcome.
    Unchanged,
}

impl Change {
    fn title(self) -> &'static str {
        match self {
            Change::Escalation => "ESCALATIONS (deny -> allow)",
            Change::Restriction => "RESTRICTIONS (allow -> deny)",
            Change::Changed => {
                "CHANGED (same decision; another status, reason, deciding policies or errors)"
            }
            Change::Unchanged => "UNCHANGED",
        }
    }
}

/// One side of a comparison: what was (or would be) answered, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ReplayOutcome {
    /// `allow` or `deny`.
    pub decision: String,
    /// HTTP status.
    pub status: u16,
    /// Reason code.
    pub reason: String,
    /// Ids of the deciding policies, sorted.
    pub policies: Vec<String>,
    /// Whether evaluation met errors.
    pub errors: bool,
}

impl ReplayOutcome {
    fn recorded(r: &DecisionRecord) -> ReplayOutcome {
        ReplayOutcome {
            decision: r.decision.clone(),
            status: r.status,
            reason: r.reason.clone(),
            policies: sorted(r.policies.iter().map(|p| p.id.clone())),
            errors: !r.errors.is_empty(),
        }
    }

    fn decided(d: &Decision) -> ReplayOutcome {
        ReplayOutcome {
            decision: if d.allowed { "allow" } else { "deny" }.to_string(),
            status: d.status,
            reason: d.reason.to_string(),
            policies: sorted(d.policies.iter().map(|p| p.id.clone())),
            errors: !d.errors.is_empty(),
        }
    }

    fn text(&self) -> String {
        let mut s = format!("{} {} {}", self.decision, self.status, self.reason);
        if !self.policies.is_empty() {
            s.push_str(&format!(" by {}", self.policies.join(", ")));
        }
        if self.errors {
            s.push_str(" (with evaluation errors)");
        }
        s
    }
}

fn sorted(ids: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = ids.collect();
    v.sort_unstable();
    v
}

/// Compares a recorded outcome with a replayed one.
pub fn classify(recorded: &ReplayOutcome, replayed: &ReplayOutcome) -> Change {
    match (recorded.decision.as_str(), replayed.decision.as_str()) {
        ("deny", "allow") => Change::Escalation,
        ("allow", "deny") => Change::Restriction,
        _ if recorded == replayed => Change::Unchanged,
        _ => Change::Changed,
    }
}

/// A record shown as an example.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// The record's decision id.
    pub decision_id: String,
    /// When it was decided.
    pub time: String,
    /// Who asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// `METHOD path` from the recorded context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

impl Example {
    fn of(r: &DecisionRecord) -> Example {
        let request = r
            .cedar
            .as_ref()
            .and_then(|c| {
                let http = c.context.get("request")?;
                Some(format!(
                    "{} {}",
                    http.get("method")?.as_str()?,
                    http.get("path")?.as_str()?
                ))
            })
            .or_else(|| {
                r.request
                    .as_ref()
                    .map(|line| format!("{} {}", line.method, line.path))
            })
            .or_else(|| {
                // An Authorizer API record: which method, asked by whom.
                r.api.as_ref().map(|api| {
                    format!(
                        "api {} by {}",
                        api.method,
                        api.caller.as_deref().unwrap_or("-")
                    )
                })
            });
        Example {
            decision_id: r.decision_id.clone(),
            time: r.time.clone(),
            principal: r.principal.clone(),
            request,
        }
    }

    fn text(&self) -> String {
        format!(
            "{} {} {} (decision {})",
            self.time,
            self.principal.as_deref().unwrap_or("-"),
            self.request.as_deref().unwrap_or("-"),
            self.decision_id
        )
    }
}

/// Decisions that changed the same way on the same action and resource.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// How they changed.
    pub change: Change,
    /// Action as Cedar prints it.
    pub action: String,
    /// Resource as Cedar prints it.
    pub resource: String,
    /// What was recorded.
    pub recorded: ReplayOutcome,
    /// What the candidate decides.
    pub candidate: ReplayOutcome,
    /// Decisions in the group.
    pub count: usize,
    /// Distinct principals in the group.
    pub principals: usize,
    /// The first records of the group.
    pub examples: Vec<Example>,
    /// Distinct principals seen (for `principals`).
    #[serde(skip)]
    seen: BTreeSet<String>,
}

/// Records the candidate schema rejects, with the same message.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaProblem {
    /// What the schema check said.
    pub message: String,
    /// How many records.
    pub count: usize,
    /// The first of them.
    pub example: Example,
}

/// Everything the replay found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Records read that passed the filters.
    pub records: usize,
    /// Records re-evaluated.
    pub replayed: usize,
    /// Records with no Cedar request (decided before the policies), by reason.
    pub not_replayable: BTreeMap<String, usize>,
    /// Records whose recorded Cedar request had a header value cut
    /// (`decision_log.max_header_value_bytes`): not replayed, because the record is not what
    /// Cedar evaluated.
    pub truncated: usize,
    /// The first such record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_example: Option<Example>,
    /// Replayed records by the policy-set version that decided them.
    pub recorded_versions: BTreeMap<String, usize>,
    /// Candidate policy set version.
    pub candidate_version: String,
    /// The config's policy set version (the baseline).
    pub baseline_version: String,
    /// Changed decisions, escalations first, then restrictions, then other changes; largest
    /// groups first within each.
    pub groups: Vec<Group>,
    /// Decisions the candidate decides as recorded.
    pub unchanged: usize,
    /// Records the candidate schema rejects.
    pub schema: Vec<SchemaProblem>,
    /// Records the baseline (same version as recorded) decides differently from the record.
    pub irreproducible: usize,
    /// The first such record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irreproducible_example: Option<Example>,
    /// What `--fail-on` named, and whether it happened.
    pub fail_on: Vec<FailOn>,
    /// Whether the run fails.
    pub failed: bool,
}

impl Report {
    /// Decisions in groups of `change`.
    pub fn count(&self, change: Change) -> usize {
        self.groups
            .iter()
            .filter(|g| g.change == change)
            .map(|g| g.count)
            .sum()
    }

    fn fails(&self, fail_on: &[FailOn]) -> bool {
        let escalations = self.count(Change::Escalation);
        let restrictions = self.count(Change::Restriction);
        fail_on.iter().any(|f| match f {
            FailOn::Escalation => escalations > 0,
            FailOn::Restriction => restrictions > 0,
            FailOn::Flip => escalations + restrictions > 0,
            FailOn::Change => !self.groups.is_empty(),
            FailOn::Schema => !self.schema.is_empty(),
            FailOn::Never => false,
        })
    }
}

/// Checks a recorded Cedar request against the candidate's schema: the action is declared for
/// these principal and resource types, the context has the declared shape, and the request's own
/// entities (those the static entities don't define, and the principal) conform.
struct SchemaCheck<'a> {
    /// The candidate schema.
    schema: &'a Schema,
    /// Uids of the candidate's static entities: evaluation keeps their static form.
    static_uids: HashSet<EntityUid>,
}

impl SchemaCheck<'_> {
    fn conforms(&self, cedar: &CedarRequest) -> Result<(), String> {
        let principal = uid(&cedar.principal)?;
        let action = uid(&cedar.action)?;
        let resource = uid(&cedar.resource)?;
        let context = Context::from_json_value(cedar.context.clone(), Some((self.schema, &action)))
            .map_err(|e| format!("context: {e}"))?;
        Request::new(
            principal.clone(),
            action,
            resource,
            context,
            Some(self.schema),
        )
        .map_err(|e| format!("request: {e}"))?;
        let mut own = Vec::new();
        for entity in &cedar.entities {
            let entity_uid = entity
                .get("uid")
                .and_then(|u| serde_json::from_value::<EntityRef>(u.clone()).ok())
                .ok_or("entities: an entity without a uid")
                .and_then(|r| uid(&r).map_err(|_| "entities: an invalid uid"))?;
            if entity_uid == principal || !self.static_uids.contains(&entity_uid) {
                own.push(entity.clone());
            }
        }
        Entities::from_json_value(Value::Array(own), Some(self.schema))
            .map_err(|e| format!("entities: {e}"))?;
        Ok(())
    }
}

fn uid(r: &EntityRef) -> Result<EntityUid, String> {
    let ty = EntityTypeName::from_str(&r.entity_type)
        .map_err(|e| format!("entity type `{}`: {e}", r.entity_type))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(&r.id)))
}

/// Replays and reports; the status says how to exit.
pub fn run(
    args: &ReplayArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ReplayStatus, CliError> {
    let w = CliError::write("stderr");
    let mut reporter = Reporter::default();
    let (config, baseline) = match crate::load(&args.config) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            write!(err, "{}", reporter.render_all(&diagnostics)).map_err(w)?;
            writeln!(
                err,
                "replay: the config or its policy folder does not load; nothing was replayed"
            )
            .map_err(CliError::write("stderr"))?;
            return Ok(ReplayStatus::CannotReplay);
        }
    };
    let candidate = match cedargate_core::policy_folder::check(&args.policies)
        .and_then(|()| PolicySnapshot::load(&args.policies))
    {
        Ok(p) => p,
        Err(e) => {
            let diagnostics = crate::policy_diagnostics(&e);
            write!(err, "{}", reporter.render_all(&diagnostics)).map_err(w)?;
            writeln!(
                err,
                "replay: the candidate policy set {} does not validate; nothing was replayed",
                args.policies.display()
            )
            .map_err(CliError::write("stderr"))?;
            return Ok(ReplayStatus::CannotReplay);
        }
    };
    let filter = match Filter::new(&args.filter, SystemTime::now()) {
        Ok(f) => f,
        Err(e) => {
            writeln!(err, "replay: {e}").map_err(CliError::write("stderr"))?;
            return Ok(ReplayStatus::CannotReplay);
        }
    };
    let inputs = if args.files.is_empty() {
        match &config.decision_log.output {
            LogOutput::File(path) => records::with_rotated(path)
                .into_iter()
                .map(Input::File)
                .collect(),
            _ => {
                writeln!(
                    err,
                    "replay: name the decision-log files to replay (`-` for stdin): {} does not write the log to a file",
                    args.config.display()
                )
                .map_err(CliError::write("stderr"))?;
                return Ok(ReplayStatus::CannotReplay);
            }
        }
    } else {
        Input::from_args(&args.files)
    };
    if candidate.schema.is_none() {
        writeln!(
            err,
            "warning: {} has no schema: its policies and the recorded requests are not validated",
            args.policies.display()
        )
        .map_err(CliError::write("stderr"))?;
    }

    let mut replay = Replay::new(&candidate, &baseline, args.examples);
    let mut skipped = Skipped::default();
    let read = records::read_all(&inputs, &mut skipped, &mut |record, _raw| {
        if filter.matches(&record) {
            replay.add(&record);
        }
        true
    });
    for warning in skipped.warnings() {
        writeln!(err, "{warning}").map_err(CliError::write("stderr"))?;
    }
    if let Err(e) = read {
        writeln!(err, "replay: {e}").map_err(CliError::write("stderr"))?;
        return Ok(ReplayStatus::CannotReplay);
    }
    let mut report = replay.finish();
    report.fail_on = args.fail_on.clone();
    report.failed = report.fails(&args.fail_on);

    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&report).unwrap_or_default();
        json.push('\n');
        json
    } else {
        render(&report, args, &inputs)
    };
    write!(out, "{text}").map_err(CliError::write("stdout"))?;
    Ok(if report.failed {
        ReplayStatus::Fail
    } else {
        ReplayStatus::Pass
    })
}

/// The replay in progress.
struct Replay<'a> {
    /// The candidate set.
    candidate: &'a PolicySnapshot,
    /// The config's set.
    baseline: &'a PolicySnapshot,
    /// Schema check of the candidate, when it has a schema.
    schema: Option<SchemaCheck<'a>>,
    /// Examples per group.
    examples: usize,
    /// Groups by key.
    groups: BTreeMap<(Change, String, String, ReplayOutcome, ReplayOutcome), Group>,
    /// Schema problems by message.
    schema_problems: BTreeMap<String, SchemaProblem>,
    /// What is being found.
    report: Report,
}

impl<'a> Replay<'a> {
    fn new(candidate: &'a PolicySnapshot, baseline: &'a PolicySnapshot, examples: usize) -> Self {
        let schema = candidate.schema.as_ref().map(|schema| SchemaCheck {
            schema,
            static_uids: candidate.entities.iter().map(|e| e.uid()).collect(),
        });
        Replay {
            candidate,
            baseline,
            schema,
            examples,
            groups: BTreeMap::new(),
            schema_problems: BTreeMap::new(),
            report: Report {
                candidate_version: candidate.version.to_string(),
                baseline_version: baseline.version.to_string(),
                ..Report::default()
            },
        }
    }

    fn add(&mut self, record: &DecisionRecord) {
        self.report.records += 1;
        // No Cedar request, or one whose entity data could not be had (the provider failed,
        // nothing was fetched): the policies never saw it, and evaluating it without that data
        // would report a decision `serve` never made.
        let cedar = match &record.cedar {
            Some(cedar) if !unavailable(record, cedar) => cedar,
            _ => {
                *self
                    .report
                    .not_replayable
                    .entry(record.reason.clone())
                    .or_default() += 1;
                return;
            }
        };
        // Cedar saw the whole header value; the record keeps a prefix. Evaluating the prefix
        // would be judging a request `serve` never saw.
        if record.cedar_cut() {
            self.report.truncated += 1;
            if self.report.truncated_example.is_none() {
                self.report.truncated_example = Some(Example::of(record));
            }
            return;
        }
        self.report.replayed += 1;
        *self
            .report
            .recorded_versions
            .entry(record.policy_version.clone())
            .or_default() += 1;
        // As `decide` does: a caller with no credential gets a 401 challenge on deny. Records of
        // the Authorizer API (`api`) carry the application's own context, whose `authenticated`
        // means whatever the application meant: its answers are never challenges.
        let anonymous =
            record.api.is_none() && cedar.context.get("authenticated") == Some(&Value::Bool(false));
        let recorded = ReplayOutcome::recorded(record);

        if let Some(check) = &self.schema
            && let Err(message) = check.conforms(cedar)
        {
            self.schema_problems
                .entry(message.clone())
                .or_insert_with(|| SchemaProblem {
                    message,
                    count: 0,
                    example: Example::of(record),
                })
                .count += 1;
        }
        if record.policy_version == *self.baseline.version {
            let again = decision::evaluate(self.baseline, cedar, anonymous);
            if ReplayOutcome::decided(&again) != recorded {
                self.report.irreproducible += 1;
                if self.report.irreproducible_example.is_none() {
                    self.report.irreproducible_example = Some(Example::of(record));
                }
            }
        }

        let replayed =
            ReplayOutcome::decided(&decision::evaluate(self.candidate, cedar, anonymous));
        let change = classify(&recorded, &replayed);
        if change == Change::Unchanged {
            self.report.unchanged += 1;
            return;
        }
        let action = cedar.action.to_string();
        let resource = cedar.resource.to_string();
        let group = self
            .groups
            .entry((
                change,
                action.clone(),
                resource.clone(),
                recorded.clone(),
                replayed.clone(),
            ))
            .or_insert_with(|| Group {
                change,
                action,
                resource,
                recorded,
                candidate: replayed,
                count: 0,
                principals: 0,
                examples: Vec::new(),
                seen: BTreeSet::new(),
            });
        group.count += 1;
        if group.seen.insert(cedar.principal.to_string()) {
            group.principals = group.seen.len();
        }
        if group.examples.len() < self.examples {
            group.examples.push(Example::of(record));
        }
    }

    fn finish(self) -> Report {
        let mut report = self.report;
        let mut groups: Vec<Group> = self.groups.into_values().collect();
        // Escalations first, then restrictions, then other changes; big groups first; then by
        // action and resource so that the report is stable.
        groups.sort_by(|a, b| {
            a.change
                .cmp(&b.change)
                .then(b.count.cmp(&a.count))
                .then(a.action.cmp(&b.action))
                .then(a.resource.cmp(&b.resource))
        });
        report.groups = groups;
        let mut schema: Vec<SchemaProblem> = self.schema_problems.into_values().collect();
        schema.sort_by(|a, b| b.count.cmp(&a.count).then(a.message.cmp(&b.message)));
        report.schema = schema;
        report
    }
}

fn render(report: &Report, args: &ReplayArgs, inputs: &[Input]) -> String {
    let mut s = String::new();
    let names: Vec<String> = inputs.iter().map(Input::name).collect();
    s.push_str(&format!(
        "replay: {} from {} against {} (policy set {})\n",
        crate::plural(report.records, "record", "records"),
        names.join(", "),
        args.policies.display(),
        report.candidate_version
    ));
    let not_replayable: usize = report.not_replayable.values().sum();
    s.push_str(&format!("  replayed {}", report.replayed));
    if not_replayable > 0 {
        let reasons: Vec<String> = report
            .not_replayable
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        s.push_str(&format!(
            "; not replayable {not_replayable} (decided before the policies: {})",
            reasons.join(", ")
        ));
    }
    s.push('\n');
    if report.truncated > 0 {
        s.push_str(&format!(
            "  not replayable exactly {}: a header value in the recorded Cedar request was cut (decision_log.max_header_value_bytes); Cedar decided on the whole value, so these are not evaluated again\n",
            crate::plural(report.truncated, "record", "records")
        ));
        if let Some(e) = &report.truncated_example {
            s.push_str(&format!("    example:   {}\n", e.text()));
        }
    }
    for (version, n) in &report.recorded_versions {
        let note = if *version == report.baseline_version {
            format!("the set in {} now", args.config.display())
        } else {
            "not the set the config names now: changes since then are included".to_string()
        };
        s.push_str(&format!(
            "  recorded under policy set {version}: {n} ({note})\n"
        ));
    }
    for change in [Change::Escalation, Change::Restriction, Change::Changed] {
        let groups: Vec<&Group> = report
            .groups
            .iter()
            .filter(|g| g.change == change)
            .collect();
        if groups.is_empty() {
            continue;
        }
        s.push_str(&format!(
            "\n{}: {} in {}\n",
            change.title(),
            crate::plural(report.count(change), "decision", "decisions"),
            crate::plural(groups.len(), "group", "groups")
        ));
        for g in groups {
            let action = records::entity_id(&g.action).unwrap_or_else(|| g.action.clone());
            s.push_str(&format!(
                "  {} ({}): {action} on {}\n",
                crate::plural(g.count, "decision", "decisions"),
                crate::plural(g.principals, "principal", "principals"),
                g.resource
            ));
            s.push_str(&format!("    recorded:  {}\n", g.recorded.text()));
            s.push_str(&format!("    candidate: {}\n", g.candidate.text()));
            for e in &g.examples {
                s.push_str(&format!("    example:   {}\n", e.text()));
            }
        }
    }
    if !report.schema.is_empty() {
        let n: usize = report.schema.iter().map(|p| p.count).sum();
        s.push_str(&format!(
            "\nSCHEMA: {} the candidate schema rejects (its policies were validated for other requests)\n",
            crate::plural(n, "record", "records")
        ));
        for p in &report.schema {
            s.push_str(&format!("  {} {}\n", p.count, p.message));
            s.push_str(&format!("    example:   {}\n", p.example.text()));
        }
    }
    if report.irreproducible > 0 {
        s.push_str(&format!(
            "\nNOT REPRODUCIBLE: {} decided differently by {} (the same policy set) than recorded; redacted claims or a different cedargate build can cause this\n",
            crate::plural(report.irreproducible, "record", "records"),
            args.config.display()
        ));
        if let Some(e) = &report.irreproducible_example {
            s.push_str(&format!("    example:   {}\n", e.text()));
        }
    }
    s.push_str(&format!(
        "\nresult: {}, {}, {} changed, {} unchanged\n",
        crate::plural(
            report.count(Change::Escalation),
            "escalation",
            "escalations"
        ),
        crate::plural(
            report.count(Change::Restriction),
            "restriction",
            "restrictions"
        ),
        report.count(Change::Changed),
        report.unchanged
    ));
    let named: Vec<&str> = report
        .fail_on
        .iter()
        .map(|f| match f {
            FailOn::Escalation => "escalation",
            FailOn::Restriction => "restriction",
            FailOn::Flip => "flip",
            FailOn::Change => "change",
            FailOn::Schema => "schema",
            FailOn::Never => "never",
        })
        .collect();
    s.push_str(&format!(
        "{} (--fail-on {})\n",
        if report.failed { "FAIL" } else { "ok" },
        named.join(",")
    ));
    s
}

/// A record denied before the policies ran because the entity provider failed.
fn unavailable(record: &DecisionRecord, cedar: &CedarRequest) -> bool {
    decision::decided_without_entities(&record.reason, cedar)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(decision: &str, reason: &str, policies: &[&str]) -> ReplayOutcome {
        ReplayOutcome {
            decision: decision.into(),
            status: if decision == "allow" { 200 } else { 403 },
            reason: reason.into(),
            policies: policies.iter().map(|p| p.to_string()).collect(),
            errors: false,
        }
    }

    #[test]
    fn changes_are_classified_escalations_first() {
        let deny = outcome("deny", "no_permit", &[]);
        let allow = outcome("allow", "allow", &["p"]);
        let forbid = outcome("deny", "forbid", &["f"]);
        let allow_other = outcome("allow", "allow", &["q"]);
        assert_eq!(classify(&deny, &allow), Change::Escalation);
        assert_eq!(classify(&allow, &deny), Change::Restriction);
        assert_eq!(classify(&deny, &forbid), Change::Changed);
        assert_eq!(classify(&allow, &allow_other), Change::Changed);
        assert_eq!(classify(&allow, &allow.clone()), Change::Unchanged);
        assert!(Change::Escalation < Change::Restriction);
        assert!(Change::Restriction < Change::Changed);
    }
}
