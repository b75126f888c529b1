//! Finding policy test files: the inputs `test` runs and `validate` checks, in one place so
//! neither subcommand imports the other.

use std::path::{Path, PathBuf};

use cedargate_core::config::Config;

use crate::Diagnostic;
use crate::case::TESTS_DIR;

/// The test files named by `paths` (files as given, folders searched recursively, sorted), or in
/// `<policy_dir>/tests/` when none are named.
pub fn discover(paths: &[PathBuf], config: &Config) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let default = [config.policy_dir.join(TESTS_DIR)];
    let roots: &[PathBuf] = if paths.is_empty() { &default } else { paths };
    let mut visited = Vec::new();
    for root in roots {
        if root.is_file() {
            files.push(root.clone());
        } else if root.is_dir() {
            walk(root, &mut files, &mut problems, &mut visited);
        } else if !paths.is_empty() {
            problems.push(Diagnostic::error(root, 0, 0, "no such file or folder"));
        }
    }
    (files, problems)
}

/// Collects `*.yaml`/`*.yml` under `dir`. `visited` holds the real paths of the folders walked
/// so far: a symbolic link back to one of them is reported and not followed (following it
/// would read the same files again and again, until the path grows too long), and so is a link
/// that can't be followed at all.
fn walk(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    problems: &mut Vec<Diagnostic>,
    visited: &mut Vec<PathBuf>,
) {
    match std::fs::canonicalize(dir) {
        Ok(real) if visited.contains(&real) => {
            problems.push(Diagnostic::error(
                dir,
                0,
                0,
                format!(
                    "a symbolic link back to `{}`, which is already searched: it is not followed; remove the link",
                    real.display()
                ),
            ));
            return;
        }
        Ok(real) => visited.push(real),
        Err(e) => {
            problems.push(Diagnostic::error(dir, 0, 0, format!("cannot read: {e}")));
            return;
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(Diagnostic::error(dir, 0, 0, format!("cannot read: {e}")));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, files, problems, visited);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            if path.is_file() {
                files.push(path);
            } else {
                problems.push(Diagnostic::error(
                    &path,
                    0,
                    0,
                    "a symbolic link that can't be followed (it loops, or its target is gone), so its cases are not run: fix the link or remove it",
                ));
            }
        }
    }
}
