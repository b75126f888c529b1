//! Config problems: each with its line and column, all reported together.

use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

/// One problem in the config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// What is wrong and what would be right.
    pub message: String,
}

/// Why a config could not be loaded: either it could not be read, or it holds problems (all of
/// them, not just the first).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the config: {}", path.display(), io_words(error))]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error; said in plain words in the message (not a `source`, which `serve`
        /// would print again in the OS's words).
        error: std::io::Error,
    },
    /// The file was read but is not a valid config.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

/// An IO error in plain words, without Rust's `(os error N)`: what a person reading a config
/// error needs.
pub fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "no such file (give the config with `-c FILE`)".to_string(),
        ErrorKind::PermissionDenied => "permission denied".to_string(),
        ErrorKind::IsADirectory => "this is a folder; give the config file itself".to_string(),
        ErrorKind::InvalidData => "not UTF-8 text".to_string(),
        _ => {
            let text = e.to_string();
            text.find(" (os error")
                .and_then(|at| text.get(..at))
                .map_or(text.clone(), str::to_string)
        }
    }
}

fn render_problems(path: &Path, problems: &[ConfigProblem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if p.line > 0 {
            out.push_str(&format!(
                "{}:{}:{}: {}",
                path.display(),
                p.line,
                p.column,
                p.message
            ));
        } else {
            out.push_str(&format!("{}: {}", path.display(), p.message));
        }
    }
    out
}

/// Collects problems during validation.
#[derive(Default)]
pub(super) struct Collected(pub(super) Vec<ConfigProblem>);

impl Collected {
    pub(super) fn at<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
            message: message.into(),
        });
    }

    pub(super) fn nowhere(&mut self, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            line: 0,
            column: 0,
            message: message.into(),
        });
    }
}
