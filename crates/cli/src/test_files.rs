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
    for root in roots {
        if root.is_file() {
            files.push(root.clone());
        } else if root.is_dir() {
            walk(root, &mut files, &mut problems);
        } else if !paths.is_empty() {
            problems.push(Diagnostic::error(root, 0, 0, "no such file or folder"));
        }
    }
    (files, problems)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, problems: &mut Vec<Diagnostic>) {
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
            walk(&path, files, problems);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
}
