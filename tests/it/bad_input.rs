//! Bad configs and policy folders fed to the real `cedargate` binary (`validate` and `serve`),
//! each checked for the exit code and for a message that says where (file, line:column or the
//! field) and what to do — and says it once, without library advice or `os error N` (issue 15).
//! `serve` listens on ephemeral ports in every config here, so a regression that starts it
//! anyway can't collide with anything; it is killed after a deadline and the test fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{CliRun, cli};

/// A config that is valid apart from what each test adds: ephemeral ports, no decision log.
const BASE: &str = "listen: { grpc: \"127.0.0.1:0\", admin: \"127.0.0.1:0\" }\n\
                    decision_log: { output: off }\n\
                    policy_dir: policies\n";

/// A folder with `c.yaml` (the given text) and a valid `policies/` beside it.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(config: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.yaml"), config).unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(
            dir.path().join("policies/all.cedar"),
            "@id(\"all\")\npermit(principal, action, resource);\n",
        )
        .unwrap();
        Case { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> String {
        self.path("c.yaml").display().to_string()
    }

    fn validate(&self) -> CliRun {
        run(&["validate", "-c", &self.config()], self.dir.path())
    }

    /// `serve`, which must refuse and exit by itself.
    fn serve(&self) -> CliRun {
        run(&["serve", "-c", &self.config()], self.dir.path())
    }
}

/// Runs the binary in `dir`; fails the test if it is still running after 20 s (a `serve` that
/// started instead of refusing).
fn run(args: &[&str], dir: &Path) -> CliRun {
    cli(args)
        .dir(dir)
        .env("NO_COLOR", "1")
        .deadline(Duration::from_secs(20))
        .run()
}

/// Checks what every refusal shares: exit 1, the message on stderr naming what `wants` name,
/// and none of the noise issue 15 found.
fn refused(run: &CliRun, wants: &[&str]) {
    assert_eq!(
        run.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    for want in wants {
        assert!(
            run.stderr.contains(want),
            "stderr lacks {want:?}:\n{}",
            run.stderr
        );
    }
    for noise in [
        "os error",
        "DuplicateKeyPolicy",
        "error: line ",
        "invalid u64",
    ] {
        assert!(
            !run.stderr.contains(noise),
            "stderr has {noise:?}:\n{}",
            run.stderr
        );
    }
}

/// `serve` prints one `error:` line per problem, each problem once, never a second prefix.
fn said_once(run: &CliRun, message: &str) {
    assert_eq!(
        run.stderr.matches(message).count(),
        1,
        "{message:?} should appear once:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(": error:"),
        "doubled prefix:\n{}",
        run.stderr
    );
}

#[test]
fn an_empty_config_is_refused_instead_of_serving_deny_all() {
    for text in ["", "  \n\n\t\n", "# to do\n"] {
        let case = Case::new(text);
        let c = case.config();
        let serve = case.serve();
        refused(&serve, &[&format!("error: {c}: the config is empty")]);
        assert!(
            !serve.stderr.contains("cedargate.listening"),
            "{}",
            serve.stderr
        );
        let validate = case.validate();
        refused(
            &validate,
            &["the config is empty", "docs/configuration.md", &c],
        );
    }
}

#[test]
fn a_duplicate_key_names_the_key_and_where_and_says_keys_are_unique() {
    let case = Case::new(&format!("{BASE}realm: a\nrealm: b\n"));
    let c = case.config();
    let serve = case.serve();
    let message = "`realm` appears twice; each key may appear only once: keep one";
    refused(&serve, &[&format!("error: {c}:5:1: {message}")]);
    said_once(&serve, message);
    refused(&case.validate(), &[message, &format!("{c}:5:1")]);
}

#[test]
fn a_wrong_number_names_the_field_and_the_expected_type() {
    let case = Case::new(&format!(
        "{BASE}issuers:\n  - issuer: https://idp.example.com\n    audiences: [api]\n    leeway_seconds: thirty\n"
    ));
    let c = case.config();
    let message = "`issuers[0].leeway_seconds` must be a whole number, 0 or more (like `30`), without quotes or units";
    let serve = case.serve();
    refused(&serve, &[&format!("error: {c}:7:21: {message}")]);
    said_once(&serve, message);
    refused(&case.validate(), &[message, &format!("{c}:7:21")]);

    let case = Case::new(&format!("{BASE}limits:\n  max_token_bytes: -1\n"));
    refused(
        &case.serve(),
        &[&format!(
            "{}:5:20: `limits.max_token_bytes` must be a whole number",
            case.config()
        )],
    );
}

#[test]
fn zero_limits_name_each_field_at_its_position() {
    let case = Case::new(&format!(
        "{BASE}limits:\n  max_token_bytes: 0\n  max_header_bytes: 0\n"
    ));
    let c = case.config();
    for run in [case.serve(), case.validate()] {
        refused(
            &run,
            &[
                "limits.max_token_bytes must be at least 1",
                "limits.max_header_bytes must be at least 1",
            ],
        );
        assert!(!run.stderr.contains("greater than zero"), "{}", run.stderr);
    }
    let serve = case.serve();
    refused(
        &serve,
        &[
            &format!("{c}:5:20: limits.max_token_bytes must be at least 1"),
            &format!("{c}:6:21: limits.max_header_bytes must be at least 1"),
        ],
    );
}

#[test]
fn a_bad_policy_dir_is_named_in_plain_words_with_its_path() {
    // Missing.
    let case = Case::new(&BASE.replace("policy_dir: policies", "policy_dir: nowhere"));
    let missing = case.path("nowhere").display().to_string();
    let message = "the policy folder does not exist: create it, or set `policy_dir`";
    let serve = case.serve();
    refused(&serve, &[&format!("{missing}: {message}")]);
    said_once(&serve, message);
    refused(&case.validate(), &[message, &missing]);

    // A file.
    let case = Case::new(&BASE.replace("policy_dir: policies", "policy_dir: c.yaml"));
    let file = case.config();
    for run in [case.serve(), case.validate()] {
        refused(&run, &[&file, "this is a file, not a folder"]);
    }
    // Under a file (ENOTDIR).
    let case = Case::new(&BASE.replace("policy_dir: policies", "policy_dir: c.yaml/policies"));
    for run in [case.serve(), case.validate()] {
        refused(&run, &["part of this path is a file, not a folder"]);
    }

    // A symbolic link to itself (ELOOP).
    let case = Case::new(&BASE.replace("policy_dir: policies", "policy_dir: loop"));
    std::os::unix::fs::symlink(case.path("loop"), case.path("loop")).unwrap();
    let looping = case.path("loop").display().to_string();
    for run in [case.serve(), case.validate()] {
        refused(&run, &[&looping, "symbolic link", "loops back on itself"]);
    }
}

#[test]
fn a_link_inside_the_policy_folder_that_cant_be_followed_is_reported() {
    let case = Case::new(BASE);
    let link = case.path("policies/more.cedar");
    std::os::unix::fs::symlink(&link, &link).unwrap();
    let name = link.display().to_string();
    for run in [case.serve(), case.validate()] {
        refused(
            &run,
            &[
                &name,
                "loops back on itself, so it is not loaded: fix the link or remove it",
            ],
        );
    }
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(case.path("policies/gone.cedar"), &link).unwrap();
    refused(&case.validate(), &[&name, "which does not exist"]);
}

#[test]
fn serve_prints_each_policy_error_once() {
    let case = Case::new(BASE);
    std::fs::write(
        case.path("policies/broken.cedar"),
        "permit(principal, action, resource)\n",
    )
    .unwrap();
    let serve = case.serve();
    let broken = case.path("policies/broken.cedar").display().to_string();
    refused(&serve, &[&format!("{broken}:")]);
    said_once(&serve, &format!("{broken}:"));
}

const ROUTES: &str = "routes:
  - { service: orders, methods: [GET], path: \"/orders/{id}\" }
  - { service: orders, methods: [GET], path: /orders/status }
";

#[test]
fn a_route_that_can_never_match_is_an_error_at_its_line() {
    let case = Case::new(&format!("{BASE}{ROUTES}"));
    let c = case.config();
    let message = "route `/orders/status` can never match: route `/orders/{id}` (line 5) comes first and matches every request it would; move it above, or remove it";
    let serve = case.serve();
    refused(&serve, &[&format!("error: {c}:6:5: {message}")]);
    said_once(&serve, message);
    refused(&case.validate(), &[message, &format!("{c}:6:5")]);

    // The other order is the usual exception: no error, no warning.
    let swapped = "routes:
  - { service: orders, methods: [GET], path: /orders/status }
  - { service: orders, methods: [GET], path: \"/orders/{id}\" }
";
    let case = Case::new(&format!("{BASE}{swapped}"));
    let run = case.validate();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("ok (0 issuers, 2 routes"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("warning"), "{}", run.stdout);
}

#[test]
fn a_duplicate_route_and_a_repeated_parameter_are_errors() {
    let case = Case::new(&format!(
        "{BASE}routes:\n  - {{ methods: [POST], path: /payments }}\n  - {{ methods: [POST], path: /payments }}\n  - {{ methods: [GET], path: \"/payments/{{id}}/{{id}}\" }}\n"
    ));
    let c = case.config();
    for run in [case.serve(), case.validate()] {
        refused(
            &run,
            &[
                "route `/payments` repeats route `/payments` (line 5): same service, host, methods and path; remove one",
                "parameter `id` appears twice; give each parameter its own name",
            ],
        );
    }
    let serve = case.serve();
    refused(
        &serve,
        &[
            &format!("{c}:6:5: route `/payments` repeats"),
            &format!("{c}:7:"),
        ],
    );
}

#[test]
fn overlapping_routes_are_warnings_that_validate_prints_and_serve_logs() {
    let case = Case::new(&format!(
        "{BASE}routes:\n  - {{ methods: [GET], path: \"/a/{{x}}/c\" }}\n  - {{ methods: [GET], path: \"/a/b/{{y}}\" }}\n"
    ));
    let run = case.validate();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("warning: route `/a/b/{y}` overlaps route `/a/{x}/c` (line 5) on GET"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("1 warning"), "{}", run.stdout);

    // `serve` starts (a warning never stops a load) and logs it with its position.
    let config = std::fs::read_to_string(case.path("c.yaml")).unwrap();
    let logs = crate::cli_conventions::serve_logs_with(&config, &["--color", "never"], &[]);
    assert!(
        logs.contains("config.warning")
            && logs.contains("line=6")
            && logs.contains("overlaps route `/a/{x}/c` (line 5) on GET"),
        "{logs}"
    );
}

/// The policy test runner judges stated tokens by the issuer's token options exactly as `serve`
/// does, and says why a token would be refused.
#[test]
fn a_stated_token_the_issuers_options_refuse_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(crate::support::repo().join("cedargate.yaml")).unwrap();
    let config = shipped
        .replacen(
            "    leeway_seconds: 30\n",
            "    leeway_seconds: 30\n    max_token_lifetime_seconds: 600\n    reject_future_iat: true\n",
            1,
        )
        .replace(
            "policy_dir: policies",
            &format!(
                "policy_dir: {}",
                crate::support::repo().join("policies").display()
            ),
        );
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, config).unwrap();
    let c = path.to_str().unwrap();
    let at = 1_893_456_000_u64; // 2030-01-01T00:00:00Z
    let check = |claims: &[String]| {
        let mut args = vec![
            "check".to_string(),
            "-c".to_string(),
            c.to_string(),
            "--time".to_string(),
            "2030-01-01T00:00:00Z".to_string(),
            "--service".to_string(),
            "orders".to_string(),
            "--path".to_string(),
            "/orders/1".to_string(),
            "--issuer".to_string(),
            "demo-idp".to_string(),
            "--claim".to_string(),
            "sub=alice".to_string(),
        ];
        for claim in claims {
            args.push("--claim".to_string());
            args.push(claim.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, dir.path())
    };
    // No times stated: the runner's default lifetime fits the issuer's bound.
    let ok = check(&[]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);

    let long = check(&[format!("iat={at}"), format!("exp={}", at + 3600)]);
    assert_eq!(long.code, 1, "{}{}", long.stdout, long.stderr);
    assert!(
        long.stderr.contains(&format!(
            "claims `exp` {} minus `iat` {at} is longer than the issuer's max_token_lifetime_seconds 600",
            at + 3600
        )) && long.stderr.contains("invalid: token_lifetime_too_long"),
        "{}",
        long.stderr
    );

    let future = check(&[format!("iat={}", at + 3600), format!("exp={}", at + 3700)]);
    assert_eq!(future.code, 1, "{}{}", future.stdout, future.stderr);
    assert!(
        future.stderr.contains(&format!(
            "claim `iat` {} is after the case's time {at}",
            at + 3600
        )) && future.stderr.contains("invalid: token_issued_in_future"),
        "{}",
        future.stderr
    );
}

/// A link loop among the policy tests: reported, not walked round and round (it once made 246
/// copies of the test files, every case run 41 times, and `validate` said ok).
#[test]
fn a_link_loop_among_the_policy_tests_is_reported_not_followed() {
    let case = Case::new(BASE);
    let tests = case.path("policies/tests");
    std::fs::create_dir(&tests).unwrap();
    std::fs::write(
        tests.join("all.yaml"),
        "version: 1\ncases:\n  - name: anyone\n    request: { path: /x }\n    expect: { decision: deny }\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(".", tests.join("again")).unwrap();
    std::os::unix::fs::symlink(tests.join("gone.yaml"), tests.join("more.yaml")).unwrap();
    let again = tests.join("again").display().to_string();
    let more = tests.join("more.yaml").display().to_string();
    let validate = case.validate();
    refused(
        &validate,
        &[
            &again,
            "a symbolic link back to",
            "it is not followed; remove the link",
            &more,
            "can't be followed",
        ],
    );
    assert!(
        validate.stdout.contains("1 test file") || validate.stdout.contains("2 errors"),
        "{}",
        validate.stdout
    );
    let test = run(&["test", "-c", &case.config()], case.dir.path());
    assert_eq!(test.code, 1, "{}{}", test.stdout, test.stderr);
    assert!(
        test.stderr.contains("a symbolic link back to"),
        "{}",
        test.stderr
    );
    // The one real case ran once; the run still fails, saying why last.
    assert!(
        test.stdout
            .contains("1 passed, 0 failed\ntest files: FAILED"),
        "{}",
        test.stdout
    );
}

#[test]
fn a_missing_or_folder_config_is_named_in_plain_words() {
    let case = Case::new(BASE);
    let missing = case.path("nope.yaml").display().to_string();
    for sub in ["serve", "validate"] {
        let run = run(&[sub, "-c", &missing], case.dir.path());
        refused(&run, &[&missing, "cannot read the config: no such file"]);
    }
    let folder = case.path("policies").display().to_string();
    let serve = run(&["serve", "-c", &folder], case.dir.path());
    refused(
        &serve,
        &[&format!(
            "error: {folder}: cannot read the config: this is a folder"
        )],
    );
}

#[test]
fn a_missing_candidate_folder_for_replay_is_named_in_plain_words() {
    let case = Case::new(BASE);
    std::fs::write(case.path("log.jsonl"), "").unwrap();
    let missing = case.path("candidate").display().to_string();
    let run = run(
        &[
            "replay",
            "-c",
            &case.config(),
            "--policies",
            &missing,
            &case.path("log.jsonl").display().to_string(),
        ],
        case.dir.path(),
    );
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("the policy folder does not exist") && run.stderr.contains(&missing),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("os error"), "{}", run.stderr);
}

#[test]
fn a_missing_semicolon_is_reported_at_the_line_it_is_missing_from() {
    let case = Case::new(BASE);
    std::fs::write(
        case.path("policies/s.cedarschema"),
        "entity Group;\n// users\nentity User in [Group]\n\nentity Doc;\naction view appliesTo { principal: User, resource: Doc };\n",
    )
    .unwrap();
    std::fs::write(
        case.path("policies/all.cedar"),
        "@id(\"all\")\npermit(principal, action, resource);\n",
    )
    .unwrap();
    let validate = case.validate();
    // Line 3 lacks its `;`; Cedar stops at `entity` on line 5.
    refused(
        &validate,
        &[
            "s.cedarschema:3:23",
            "met at line 5 column 1",
            "expected at the end of line 3, such as a `;`",
        ],
    );
    refused(&case.serve(), &["s.cedarschema:3:23"]);
}

/// Issue 15's security finding: an issuer (or its JWKS URL) with user info passed the
/// "plain http only on loopback" rule, `localhost:80` being read as the host, and `serve`
/// fetched keys from the host after the `@`. Refused by both commands, at the field, before any
/// fetch (the evil host is never resolved: `serve` exits at once).
#[test]
fn user_info_in_an_issuer_or_jwks_url_is_refused_before_any_fetch() {
    for (what, line, yaml) in [
        (
            "issuer must not carry",
            5,
            "issuers:\n  - issuer: http://localhost:80@idp.evil.example\n    audiences: [api]\n",
        ),
        (
            "issuer must not carry",
            5,
            "issuers:\n  - issuer: https://svc:hunter2@idp.example.com\n    audiences: [api]\n",
        ),
        (
            "jwks_uri must not carry",
            7,
            "issuers:\n  - issuer: http://127.0.0.1:9400\n    audiences: [api]\n    jwks_uri: http://127.0.0.1:80@idp.evil.example/jwks\n",
        ),
    ] {
        let case = Case::new(&format!("{BASE}{yaml}"));
        let c = case.config();
        let wants = [
            &format!("{c}:{line}:")[..],
            what,
            "must not carry user info (`user@host`)",
        ];
        let serve = case.serve();
        refused(&serve, &wants);
        said_once(&serve, "must not carry user info");
        let validate = case.validate();
        refused(&validate, &wants);
        // User info may be a password: the URL is never echoed.
        for out in [&serve.stderr, &validate.stderr, &validate.stdout] {
            assert!(
                !out.contains("hunter2") && !out.contains("localhost:80@"),
                "{out}"
            );
        }
        assert!(
            !serve.stderr.contains("jwks."),
            "a key fetch was tried:\n{}",
            serve.stderr
        );
    }
}
