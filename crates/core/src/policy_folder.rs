//! The policy folder as a folder: that `policy_dir` exists, is a folder (not a file, not a
//! symbolic link that loops or points nowhere), and that every entry in it can be followed.
//! Checked before [`crate::policy`] reads the files, so a person gets plain words and the path
//! instead of `os error 2/20/40`, and a link inside the folder that can't be followed is an error
//! instead of a file silently left out of the policy set.
//!
//! Reads only directory entries and link targets; never file contents.

use std::io::ErrorKind;
use std::path::Path;

use crate::policy::{PolicyLoadError, PolicyProblem};

/// What `policy_dir` should hold, for the advice in messages.
const WHAT_IT_HOLDS: &str =
    "the folder holding your *.cedar files, *.cedarschema and entities.json";

/// Every problem with the folder itself and the entries in it that can't be followed.
pub fn check(dir: &Path) -> Result<(), PolicyLoadError> {
    let problem = |file: &Path, message: String| PolicyProblem {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        message,
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(PolicyLoadError(vec![problem(
                dir,
                format!("this is a file, not a folder: set `policy_dir` to {WHAT_IT_HOLDS}"),
            )]));
        }
        Err(e) => {
            let message = match unfollowable(dir, &e) {
                Some(link) => format!("the policy folder is {link}: set `policy_dir` to {WHAT_IT_HOLDS}"),
                None => match e.kind() {
                    ErrorKind::NotFound => format!(
                        "the policy folder does not exist: create it, or set `policy_dir` to {WHAT_IT_HOLDS}"
                    ),
                    ErrorKind::NotADirectory => format!(
                        "part of this path is a file, not a folder: set `policy_dir` to {WHAT_IT_HOLDS}"
                    ),
                    ErrorKind::PermissionDenied => {
                        "the policy folder can't be opened: permission denied (cedargate needs to read it)"
                            .to_string()
                    }
                    _ => format!("the policy folder can't be opened: {}", plain(&e)),
                },
            };
            return Err(PolicyLoadError(vec![problem(dir, message)]));
        }
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        PolicyLoadError(vec![problem(
            dir,
            format!("the policy folder can't be listed: {}", plain(&e)),
        )])
    })?;
    let mut problems = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                problems.push(problem(
                    dir,
                    format!("an entry of the policy folder can't be read: {}", plain(&e)),
                ));
                continue;
            }
        };
        // Emacs keeps `.#name` lock links to nowhere beside files being edited: not policy data,
        // and refusing them would make every save in Emacs a failed reload.
        if entry.file_name().as_encoded_bytes().starts_with(b".#") {
            continue;
        }
        let path = entry.path();
        if let Err(e) = std::fs::metadata(&path)
            && let Some(link) = unfollowable(&path, &e)
        {
            problems.push(problem(
                &path,
                format!("this is {link}, so it is not loaded: fix the link or remove it"),
            ));
        }
    }
    problems.sort_by(|a, b| a.file.cmp(&b.file));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PolicyLoadError(problems))
    }
}

/// When `path` is a symbolic link that `metadata` could not follow (`error`), what is wrong
/// with it, in words.
fn unfollowable(path: &Path, error: &std::io::Error) -> Option<String> {
    let link = std::fs::symlink_metadata(path).ok()?;
    if !link.file_type().is_symlink() {
        return None;
    }
    let target = std::fs::read_link(path)
        .map(|t| format!(" to `{}`", t.display()))
        .unwrap_or_default();
    Some(match error.kind() {
        ErrorKind::NotFound => format!("a symbolic link{target}, which does not exist"),
        // ELOOP has no stable `ErrorKind`; a link whose target exists but can't be reached
        // through links is a loop (or a chain longer than the system follows).
        _ => format!("a symbolic link{target} that loops back on itself"),
    })
}

/// An IO error without Rust's `(os error N)` suffix.
fn plain(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text.get(..at).unwrap_or(&text).to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(dir: &Path) -> Vec<String> {
        match check(dir) {
            Ok(()) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_missing_file_or_looping_folder_is_named_in_plain_words() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let missing = root.join("nope");
        assert_eq!(
            messages(&missing),
            vec![format!(
                "{}: the policy folder does not exist: create it, or set `policy_dir` to {WHAT_IT_HOLDS}",
                missing.display()
            )]
        );
        let file = root.join("file");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(
            messages(&file),
            vec![format!(
                "{}: this is a file, not a folder: set `policy_dir` to {WHAT_IT_HOLDS}",
                file.display()
            )]
        );
        let under_file = file.join("policies");
        let got = messages(&under_file);
        assert!(got[0].contains("part of this path is a file"), "{got:?}");
        let looping = root.join("loop");
        std::os::unix::fs::symlink(&looping, &looping).unwrap();
        let got = messages(&looping);
        assert!(got[0].contains("loops back on itself"), "{got:?}");
        for m in messages(&missing)
            .iter()
            .chain(&messages(&file))
            .chain(&got)
        {
            assert!(!m.contains("os error"), "{m}");
        }
    }

    #[test]
    fn an_unfollowable_link_inside_the_folder_is_reported_not_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("a.cedar"), "permit(principal, action, resource);").unwrap();
        assert_eq!(messages(dir), Vec::<String>::new());
        std::os::unix::fs::symlink(dir.join("b.cedar"), dir.join("b.cedar")).unwrap();
        std::os::unix::fs::symlink(dir.join("gone.cedar"), dir.join("c.cedar")).unwrap();
        // An editor's lock link is not policy data.
        std::os::unix::fs::symlink("user@host.1:1", dir.join(".#a.cedar")).unwrap();
        let got = messages(dir);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].contains("b.cedar: this is a symbolic link"),
            "{got:?}"
        );
        assert!(got[0].contains("loops back on itself, so it is not loaded"));
        assert!(
            got[1].contains("c.cedar: this is a symbolic link"),
            "{got:?}"
        );
        assert!(got[1].contains("which does not exist"), "{got:?}");
    }
}
