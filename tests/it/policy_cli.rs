//! The policy author's commands, driven through the real `cedargate` binary: `validate`, `test`
//! (format, coverage, JUnit), `check` (explanations) and `schema`, on the shipped policy set, on
//! mutated copies of it, on a directory of malformed inputs (`tests/fixtures/policy-cli/`), and on
//! a policy set whose entity data is split across the token, `entities.json` and the entity
//! provider (`tests/fixtures/policy-cli/merged/`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::support::{CliRun, cli, repo};

/// Runs the binary in the repository root.
fn cedargate(args: &[&str]) -> CliRun {
    cli(args).dir(&repo()).run()
}

/// Runs the binary in the repository root with `stdin` on its standard input.
fn cedargate_with_stdin(args: &[&str], stdin: &str) -> CliRun {
    cli(args).dir(&repo()).stdin(stdin).run()
}

/// A copy of the shipped config and policy folder (tests included) in a temporary directory.
fn copy_of_shipped() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("cedargate.yaml"),
        dir.path().join("cedargate.yaml"),
    )
    .unwrap();
    copy_tree(&repo().join("policies"), &dir.path().join("policies"));
    let config = dir.path().join("cedargate.yaml");
    (dir, config)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.file_name() != "expect" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn shipped_policies_validate_and_pass_with_full_coverage() {
    let v = cedargate(&["validate", "-c", "cedargate.yaml"]);
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(v.stdout.contains("cedargate.yaml: ok"), "{}", v.stdout);
    assert!(!v.all().contains("warning"), "{}", v.all());

    let junit = tempfile::NamedTempFile::new().unwrap();
    let t = cedargate(&[
        "test",
        "-c",
        "cedargate.yaml",
        "--require-full-coverage",
        "--junit",
        s(junit.path()),
    ]);
    assert_eq!(t.code, 0, "{}", t.all());
    assert!(
        t.stdout.contains("determined at least one decision (100%)"),
        "{}",
        t.stdout
    );
    let closing = t.stdout.lines().last().unwrap();
    assert!(
        closing.ends_with("passed, 0 failed") && !closing.starts_with("0 "),
        "{closing}"
    );
    let xml = std::fs::read_to_string(junit.path()).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains(r#"<testsuites name="cedargate test""#),
        "{xml}"
    );
    assert!(xml.contains(r#"failures="0" errors="0""#), "{xml}");
    assert!(
        xml.contains(r#"<testsuite name="policy coverage""#),
        "{xml}"
    );
    assert!(xml.contains("name=\"staff read one order\""), "{xml}");
}

/// Every policy in the shipped set, as (file, id, policy text), and every other policy in its
/// file, so the file can be rewritten without it.
fn shipped_policies() -> Vec<(PathBuf, String, Vec<String>, String)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let set = cedar_policy::PolicySet::from_str(&text).unwrap();
        let policies: Vec<(String, String)> = set
            .policies()
            .map(|p| (p.annotation("id").unwrap().to_string(), p.to_string()))
            .collect();
        for (id, text) in &policies {
            let others = policies
                .iter()
                .filter(|(other, _)| other != id)
                .map(|(_, t)| t.clone())
                .collect();
            out.push((file.clone(), id.clone(), others, text.clone()));
        }
    }
    out
}

/// The done criterion of the policy-testing workflow: removing any policy from the examples makes
/// `cedargate test` fail. And because a removed id also breaks the expectations that name it,
/// the same policy is also kept with its id but made inert (`when { false }`): the tests must
/// then fail on a *decision*, proving they check behaviour, not just ids.
#[test]
fn removing_or_disabling_any_shipped_policy_fails_the_tests() {
    let policies = shipped_policies();
    let permits = policies
        .iter()
        .filter(|(_, _, _, text)| text.contains("permit"))
        .count();
    assert!(
        permits >= 9,
        "expected the shipped permits, found {permits}"
    );
    for (file, id, others, text) in &policies {
        let name = file.file_name().unwrap();

        let (dir, config) = copy_of_shipped();
        std::fs::write(dir.path().join("policies").join(name), others.join("\n\n")).unwrap();
        let removed = cedargate(&["test", "-c", s(&config)]);
        assert_ne!(
            removed.code,
            0,
            "removing `{id}` must fail the tests:\n{}",
            removed.all()
        );
        assert!(
            !removed.stdout.ends_with(" 0 failed\n"),
            "{}",
            removed.stdout
        );

        let inert = text.trim_end().trim_end_matches(';').to_string() + "\nwhen { false };";
        let mut rewritten = others.clone();
        rewritten.push(inert);
        std::fs::write(
            dir.path().join("policies").join(name),
            rewritten.join("\n\n"),
        )
        .unwrap();
        let disabled = cedargate(&["test", "-c", s(&config)]);
        assert_ne!(disabled.code, 0, "disabling `{id}` must fail the tests");
        assert!(
            disabled.stdout.contains("FAIL "),
            "disabling `{id}` must flip a decision:\n{}",
            disabled.stdout
        );
    }
}

#[test]
fn uncovered_policies_are_named_and_fail_only_when_required() {
    let (dir, config) = copy_of_shipped();
    std::fs::write(
        dir.path().join("policies/extra.cedar"),
        "@id(\"staff-read-reports\")\n@reason(\"nobody tests this\")\npermit (principal in Group::\"staff\", action == Action::\"GET /reports/{name}\", resource == Service::\"reports\");\n",
    )
    .unwrap();

    let lenient = cedargate(&["test", "-c", s(&config)]);
    assert_eq!(lenient.code, 0, "{}", lenient.all());
    assert!(
        lenient
            .stdout
            .contains("not covered: permit staff-read-reports ("),
        "{}",
        lenient.stdout
    );
    assert!(lenient.stdout.contains("(92%)"), "{}", lenient.stdout);

    let strict = cedargate(&["test", "-c", s(&config), "--require-full-coverage"]);
    assert_eq!(strict.code, 1, "{}", strict.all());
    // The failure is the last line, after the case tally.
    let lines: Vec<&str> = strict.stdout.lines().collect();
    assert!(
        lines[lines.len() - 1].starts_with("coverage: FAILED (--require-full-coverage)"),
        "{}",
        strict.stdout
    );
    assert!(
        lines[lines.len() - 2].ends_with(" passed, 0 failed"),
        "{}",
        strict.stdout
    );
}

#[test]
fn a_failing_case_shows_expected_got_policies_and_the_cedar_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.yaml");
    std::fs::write(
        &file,
        "version: 1\ncases:\n  - name: admins are not allowed to read orders\n    request: { path: /orders/1, service: orders, headers: { user-agent: curl/8 } }\n    identity: { issuer: demo-idp, claims: { sub: alice, groups: [admins] } }\n    expect: { decision: deny, status: 403 }\n  - name: the status page is public\n    request: { path: /orders/status, service: orders }\n    expect: allow\n",
    )
    .unwrap();
    let t = cedargate(&["test", "-c", "cedargate.yaml", s(&file)]);
    assert_eq!(t.code, 1, "{}", t.all());
    let out = &t.stdout;
    for needle in [
        "FAIL ",
        "wrong.yaml:3  admins are not allowed to read orders",
        "expected: deny, status 403",
        "got:      allow (200, reason allow)",
        "mismatch: decision: expected deny",
        "mismatch: status: expected 403, got 200",
        "deciding: permit admins-everything — admins may do anything on every service",
        "deciding: permit staff-read-orders — staff may list and read orders",
        "principal: User::\"alice\"",
        "action:    Action::\"GET /orders/{id}\"",
        "resource:  Service::\"orders\"",
        "\"user-agent\": \"curl/8\"",
        "principal User::\"alice\", as evaluated:\n    in Group::\"admins\"  token claim `groups`\n    in Group::\"staff\"   via Group::\"admins\"\n",
        "resource Service::\"orders\": no entity data, so no parents or attributes",
        "why:\n    allowed: at least one permit fired and no forbid did.\n    permits that fired:\n      - permit admins-everything (policies/rbac.cedar)",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    assert!(
        !out.contains("the status page is public"),
        "passing cases stay quiet"
    );
    assert_eq!(out.lines().last().unwrap(), "1 passed, 1 failed");
}

/// Many malformed test files, one per fixture; each names the fixture file, says what is wrong
/// (the `# error:` lines at its top), exits 1, and never panics. `validate` reports the same.
#[test]
fn malformed_test_files_give_clear_errors_naming_the_file() {
    let dir = repo().join("tests/fixtures/policy-cli/test-files");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    fixtures.sort();
    assert!(
        fixtures.len() >= 25,
        "found only {} fixtures",
        fixtures.len()
    );
    for fixture in &fixtures {
        let text = std::fs::read_to_string(fixture).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# error: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# error:` line",
            fixture.display()
        );
        let name = fixture.file_name().unwrap().to_str().unwrap();
        let t = cedargate(&["test", "-c", "cedargate.yaml", s(fixture)]);
        assert_eq!(t.code, 1, "{name}:\n{}", t.all());
        let out = t.all();
        assert!(
            out.contains(name),
            "{name}: the output must name the file:\n{out}"
        );
        for e in &expected {
            assert!(out.contains(e), "{name}: missing {e:?} in\n{out}");
        }
        assert!(
            out.lines().any(|l| l.starts_with("error: ")),
            "{name}: no `error:` line in\n{out}"
        );

        // `validate` checks test files in the policy folder's tests/ with the same parser.
        let (copy, config) = copy_of_shipped();
        std::fs::copy(fixture, copy.path().join("policies/tests").join(name)).unwrap();
        let v = cedargate(&["validate", "-c", s(&config)]);
        assert_eq!(v.code, 1, "{name}: validate must fail:\n{}", v.all());
        for e in &expected {
            assert!(
                v.all().contains(e),
                "{name}: validate lacks {e:?}:\n{}",
                v.all()
            );
        }
    }
}

/// Broken policy folders and configs (`tests/fixtures/policy-cli/policy-sets/<case>/`, laid over a
/// copy of the shipped files): `validate` names file:line:column with a snippet and a caret;
/// `test` refuses to run; nothing panics.
#[test]
fn broken_policy_sets_are_reported_with_file_line_and_column() {
    let root = repo().join("tests/fixtures/policy-cli/policy-sets");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 7,
        "found only {} policy-set fixtures",
        cases.len()
    );
    for case in &cases {
        let name = case.file_name().unwrap().to_str().unwrap();
        let expected = std::fs::read_to_string(case.join("expect")).unwrap();
        let (dir, config) = copy_of_shipped();
        copy_tree(case, dir.path());
        let v = cedargate(&["validate", "-c", s(&config)]);
        assert_eq!(v.code, 1, "{name}:\n{}", v.all());
        for needle in expected.lines().filter(|l| !l.is_empty()) {
            assert!(
                v.stderr.contains(needle),
                "{name}: missing {needle:?} in\n{}",
                v.stderr
            );
        }
        assert!(v.stdout.contains("1 error"), "{name}: {}", v.stdout);
        let t = cedargate(&["test", "-c", s(&config)]);
        assert_eq!(t.code, 1, "{name}:\n{}", t.all());
        assert!(t.stderr.contains("no tests ran"), "{name}: {}", t.stderr);
    }
}

#[test]
fn check_explains_a_deny_by_a_false_condition() {
    let c = cedargate(&[
        "check",
        "-c",
        "cedargate.yaml",
        "--path",
        "/tenants/globex/orders/1",
        "--service",
        "orders",
        "--issuer",
        "demo-idp",
        "--claim",
        "sub=bob",
        "--claim",
        "groups=[\"staff\"]",
        "--claim",
        "tenant=acme",
    ]);
    assert_eq!(c.code, 0, "{}", c.all());
    let out = &c.stdout;
    for needle in [
        "decision: deny (403, reason no_permit)",
        "principal: User::\"bob\"",
        "action:    Action::\"GET /tenants/{tenant}/orders/{id}\"",
        "resource:  Tenant::\"globex\"",
        "principal User::\"bob\", as evaluated:\n  in Group::\"staff\"  token claim `groups`\n  tenant = \"acme\"    token claim `tenant`\nresource Tenant::\"globex\", as evaluated:\n  slug = \"globex\"    entities.json\n",
        "permits whose scope matched but whose condition was false:",
        "permit staff-own-tenant-orders (policies/abac.cedar) — staff may read orders of their own tenant",
        "principal has tenant  →  true",
        "principal.tenant == resource.slug   [principal.tenant = \"acme\", resource.slug = \"globex\"]  →  false",
        "scope: principal in Group::\"admins\" ✗, action ✓, resource ✓",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
}

#[test]
fn check_explains_a_forbid_and_the_permits_it_overrode() {
    let request = "request: { path: /payments/7, service: payments }\nidentity: { issuer: demo-idp, claims: { sub: carol, groups: [admins], tenant: globex } }\nexpect: { decision: deny, policies: [suspended-tenant-payments] }\n";
    let c = cedargate_with_stdin(&["check", "-c", "cedargate.yaml", "-"], request);
    assert_eq!(c.code, 0, "{}", c.all());
    let out = &c.stdout;
    for needle in [
        "decision: deny (403, reason forbid)",
        "deciding: forbid suspended-tenant-payments — tenant globex is suspended from payments",
        "denied by a forbid policy (forbids override every permit).",
        "principal.tenant == \"globex\"  →  true",
        "permits that would otherwise have allowed it:",
        "permit admins-everything (policies/rbac.cedar)",
        "expect: ok",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
}

#[test]
fn check_reads_request_files_and_explains_decisions_made_before_policies() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("req.yaml");
    std::fs::write(
        &file,
        "request: { path: /orders/1, service: orders }\nidentity: { invalid: token_expired }\nexpect: allow\n",
    )
    .unwrap();
    let c = cedargate(&["check", "-c", "cedargate.yaml", s(&file)]);
    assert_eq!(c.code, 1, "a failed expect exits 1:\n{}", c.all());
    assert!(
        c.stdout
            .contains("decision: deny (401, reason token_expired)"),
        "{}",
        c.stdout
    );
    assert!(c.stdout.contains("before any policy ran"), "{}", c.stdout);
    assert!(c.stdout.contains("expect: FAILED"), "{}", c.stdout);

    let none = cedargate(&["check", "-c", "cedargate.yaml", "--path", "/nowhere"]);
    assert_eq!(none.code, 0, "{}", none.all());
    assert!(
        none.stdout
            .contains("no route in cedargate.yaml matches GET /nowhere"),
        "{}",
        none.stdout
    );

    let both = cedargate(&["check", "-c", "cedargate.yaml", s(&file), "--path", "/x"]);
    assert_eq!(both.code, 1);
    // A problem with the input is an error: stderr, and nothing on stdout.
    assert!(both.stderr.contains("not both"), "{}", both.stderr);
    assert!(both.stdout.is_empty(), "{}", both.stdout);
}

/// The generated schema is a working starting point: with it in place of the shipped one, the
/// shipped policies validate and every shipped test case's context fits it.
#[test]
fn generated_schema_validates_the_shipped_policies_and_contexts() {
    let schema = cedargate(&["schema", "-c", "cedargate.yaml"]);
    assert_eq!(schema.code, 0, "{}", schema.all());
    assert!(
        schema
            .stdout
            .contains("action \"GET /orders/{id}\" appliesTo"),
        "{}",
        schema.stdout
    );
    let (dir, config) = copy_of_shipped();
    std::fs::write(
        dir.path().join("policies/cedargate.cedarschema"),
        &schema.stdout,
    )
    .unwrap();
    let v = cedargate(&["validate", "-c", s(&config)]);
    assert_eq!(v.code, 0, "{}\n{}", v.all(), schema.stdout);
    assert!(!v.all().contains("warning"), "{}", v.all());
    let t = cedargate(&["test", "-c", s(&config), "--require-full-coverage"]);
    assert_eq!(t.code, 0, "{}", t.all());
    assert!(!t.all().contains("warning"), "{}", t.all());
}

/// The policy set whose entity data comes from the token, `entities.json` and the entity
/// provider (its answers stated by the test files).
const MERGED: &str = "tests/fixtures/policy-cli/merged/cedargate.yaml";

#[test]
fn validate_reports_where_each_entity_types_data_comes_from() {
    let v = cedargate(&["validate", "-c", MERGED]);
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(!v.all().contains("warning"), "{}", v.all());
    let report = v.stdout.split("\ntests/fixtures").next().unwrap();
    assert_eq!(
        report,
        "entity data, by type:
  Anonymous  request   principal of callers without a credential (Anonymous::\"anonymous\")
  Document   request   resource of 1 route
             provider  entity provider, asked for the principal or resource of this type on each Check
  Team       token     parents of User (idp), ids ← claim `teams`
             static    entities.json: 1 entity (parents)
  User       token     principal of idp tokens: id ← claim `sub`, parents ← claim `groups` (UserGroup), claim `teams` (Team), attributes department ← claim `dept`
             static    entities.json: 2 entities (parents; attributes blocked, department)
             note: entities.json holds 2 entities of this principal type: a token principal with one of those uids is merged with it (parents unioned; attributes: claims over entities.json's)
  UserGroup  token     parents of User (idp), ids ← claim `groups`
             static    entities.json: 1 entity"
    );
    assert!(
        v.stdout
            .ends_with("cedargate.yaml: ok (1 issuer, 1 route, 3 policies, policy set ")
            || v.stdout
                .contains(": ok (1 issuer, 1 route, 3 policies, policy set "),
        "{}",
        v.stdout
    );

    // The shipped set: every type has a source; no principal type has static entries.
    let shipped = cedargate(&["validate", "-c", "cedargate.yaml"]);
    for needle in [
        "  Service    token     principal of demo-idp client-only tokens (client_credentials): id ← claim `client_id`\n             request   resource of 8 routes\n",
        "  Workload   mtls      principal of mTLS peers, id = Envoy's source.principal\n",
        "  Tenant     request   resource of 1 route\n             static    entities.json: 2 entities (attributes slug)\n",
    ] {
        assert!(
            shipped.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            shipped.stdout
        );
    }
    assert!(!shipped.stdout.contains("note:"), "{}", shipped.stdout);
}

/// Provider answers stated in a test file go through `Prepared::set_fetched`, merged as `serve`
/// merges them: the owner comes from the provider, a team from `entities.json`, a block from
/// `entities.json` overrides a reader's token, a case's answer replaces the file's.
#[test]
fn test_cases_decide_with_the_merged_principal_and_stated_provider_answers() {
    let t = cedargate(&["test", "-c", MERGED, "--require-full-coverage"]);
    assert_eq!(t.code, 0, "{}", t.all());
    assert!(t.stdout.ends_with("8 passed, 0 failed\n"), "{}", t.stdout);
    assert!(t.stdout.contains("(100%)"), "{}", t.stdout);
}

#[test]
fn a_failing_case_shows_the_merged_principal_with_sources_and_why_policies_did_not_fire() {
    let t = cedargate(&[
        "test",
        "-c",
        MERGED,
        "tests/fixtures/policy-cli/merged/failing.yaml",
    ]);
    assert_eq!(t.code, 1, "{}", t.all());
    let out = &t.stdout;
    for needle in [
        // The static entry of the principal is used, and said to be.
        "  principal User::\"alice\", as evaluated:
    in Team::\"blue\"             entities.json
    in UserGroup::\"readers\"     via Team::\"blue\"
    blocked = false             entities.json
    department = \"engineering\"  token claim `dept` (over entities.json's \"sales\")
  resource Document::\"d2\", as evaluated:
    owner = User::\"bob\"         entity provider
    private = false             entity provider
",
        // Why the expected permit did not decide.
        "    expected policies that did not decide:
      - permit owner-reads (tests/fixtures/policy-cli/merged/policies/docs.cedar) — owners read their documents
          when { … } is false
            resource.owner == principal   [resource.owner = User::\"bob\", principal = User::\"alice\"]  →  false
",
        // A forbid the static data made fire.
        "  principal User::\"mallory\", as evaluated:
    in UserGroup::\"readers\"  token claim `groups`
    blocked = true           entities.json
",
        "    forbids that fired:
      - forbid blocked-users (tests/fixtures/policy-cli/merged/policies/docs.cedar) — blocked users read nothing
          when { … } is true
",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    assert_eq!(out.lines().last().unwrap(), "0 passed, 2 failed");
}

#[test]
fn check_shows_the_principal_as_evaluated_and_why_it_was_refused() {
    let request = "request: { service: docs, path: /api/docs/d9 }\nidentity: { issuer: idp, claims: { sub: bob, teams: [blue], dept: ops } }\nentities:\n  - { uid: { type: Document, id: d9 }, attrs: { owner: { __entity: { type: User, id: bob } }, private: true }, parents: [] }\nexpect: { decision: allow, policies: [owner-reads] }\n";
    let c = cedargate_with_stdin(&["check", "-c", MERGED, "-"], request);
    assert_eq!(c.code, 0, "{}", c.all());
    for needle in [
        "route:    /api/{kind}s/{id}",
        "\"kind\": \"doc\"",
        "principal User::\"bob\", as evaluated:
  in Team::\"blue\"          token claim `teams`
  in UserGroup::\"readers\"  via Team::\"blue\"
  department = \"ops\"       token claim `dept`
resource Document::\"d9\", as evaluated:
  owner = User::\"bob\"      entity provider
  private = true           entity provider
",
        "expect: ok",
    ] {
        assert!(
            c.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            c.stdout
        );
    }

    // A principal the merge refuses: what each source said, and Cedar's detail.
    let invalid = "request: { service: docs, path: /api/docs/d1 }\nidentity: { issuer: idp, claims: { sub: alice, dept: 42 } }\nexpect: { reason: principal_invalid }\n";
    let c = cedargate_with_stdin(&["check", "-c", MERGED, "-"], invalid);
    assert_eq!(c.code, 0, "{}", c.all());
    for needle in [
        "decision: deny (403, reason principal_invalid)",
        "entities not evaluated: principal does not conform to the schema",
        "the token's part alone: entity does not conform to the schema: in attribute `department` on `User::\"alice\"`",
        "principal User::\"alice\", by source:\n  token: department = 42\n  entities.json: blocked = false, department = \"sales\"; in Team::\"blue\"\n",
        "resource Document::\"d1\": no entity data",
        "why:\n  no policy ran: principal does not conform to the schema",
    ] {
        assert!(
            c.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            c.stdout
        );
    }
}

/// `entities:` is checked as `serve` would meet the data: only types the provider is asked about,
/// Cedar entity JSON, each uid once; data the schema refuses is a warning (serve denies the
/// request `entities_unavailable`, which a case may test).
#[test]
fn stated_provider_answers_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "{ uid: { type: User, id: bob }, attrs: {}, parents: [] }",
            "error: User::\"bob\" is of type User, which entity_provider.types does not list (Document): serve never asks the provider for it",
        ),
        (
            "{ uid: { type: Document }, attrs: {} }",
            "error: not a Cedar entity ({uid, attrs, parents}): ",
        ),
        (
            "{ uid: { type: Document, id: d1 }, attrs: { private: true }, parents: [] }",
            "warning: Document::\"d1\" does not conform to the schema, so a request the provider answers with it is denied entities_unavailable: ",
        ),
    ];
    for (n, (entity, needle)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case{n}.yaml"));
        std::fs::write(
            &file,
            format!("version: 1\ncases:\n  - name: c\n    request: {{ service: docs, path: /api/docs/d1 }}\n    identity: {{ issuer: idp, claims: {{ sub: alice }} }}\n    entities:\n      - {entity}\n    expect: {{ decision: deny, reason: entities_unavailable }}\n"),
        )
        .unwrap();
        let t = cedargate(&["test", "-c", MERGED, s(&file)]);
        assert!(
            t.all().contains(needle),
            "missing {needle:?} in\n{}",
            t.all()
        );
        if needle.starts_with("warning") {
            // The data reaches the decision exactly as serve would use it.
            assert_eq!(t.code, 0, "{}", t.all());
            assert!(t.stdout.ends_with("1 passed, 0 failed\n"), "{}", t.stdout);
        } else {
            assert_eq!(t.code, 1, "{}", t.all());
        }
    }
}

/// `schema` reads `entities.json` in both of Cedar's forms, through Cedar's own parser, and
/// derives the same declarations from each; a file it can't read is said so in the output.
#[test]
fn schema_reads_both_entities_json_forms() {
    let (dir, config) = copy_of_shipped();
    let entities = dir.path().join("policies/entities.json");
    let mut outputs = Vec::new();
    for form in ["plain", "escaped"] {
        std::fs::copy(
            repo().join(format!(
                "tests/fixtures/policy-cli/entities-forms/{form}.json"
            )),
            &entities,
        )
        .unwrap();
        let schema = cedargate(&["schema", "-c", s(&config)]);
        assert_eq!(schema.code, 0, "{}", schema.all());
        for needle in [
            "// User: static entities in entities.json\n",
            "entity User in [Group] {\n  home?: Tenant,\n  since?: decimal,\n  tenant?: String,  // claim `tenant`; adjust the type to the claim's\n};",
            "entity Group in [Group];",
            "entity Tenant {\n  slug: String,\n};",
        ] {
            assert!(
                schema.stdout.contains(needle),
                "{form}: missing {needle:?} in\n{}",
                schema.stdout
            );
        }
        assert!(!schema.stdout.contains("// note:"), "{}", schema.stdout);
        outputs.push(schema.stdout);
    }
    assert_eq!(outputs[0], outputs[1]);

    std::fs::write(&entities, "[{\"uid\": {\"type\": \"Tenant\"}}]").unwrap();
    let schema = cedargate(&["schema", "-c", s(&config)]);
    assert_eq!(schema.code, 0, "{}", schema.all());
    assert!(
        schema.stdout.contains("// note: ")
            && schema
                .stdout
                .contains("entities.json: entity #0 is not Cedar entity JSON")
            && schema
                .stdout
                .contains("parents and attribute types from it are missing below."),
        "{}",
        schema.stdout
    );
}
