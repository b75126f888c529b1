//! Small checks every section's validation shares: a number that must be at least 1, and a
//! Cedar entity type name. Owns no section and no error text of its own beyond these two; it must
//! not import any section module (sections import it).

use std::str::FromStr;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::problems::Collected;

/// A number that must be at least 1; reports 0 instead of silently changing it.
pub(super) fn positive<T: Copy + PartialOrd + From<u8>>(
    raw: Option<&Spanned<T>>,
    default: T,
    name: &str,
    problems: &mut Collected,
) -> T {
    match raw {
        None => default,
        Some(v) if v.value < T::from(1) => {
            problems.at(v, format!("{name} must be at least 1"));
            default
        }
        Some(v) => v.value,
    }
}

/// Checks a Cedar entity type name (`Type` or `Namespace::Type`).
pub(super) fn entity_type(
    raw: Option<&Spanned<String>>,
    default: &str,
    problems: &mut Collected,
) -> Arc<str> {
    match raw {
        None => default.into(),
        Some(s) => {
            if cedar_policy::EntityTypeName::from_str(&s.value).is_err() {
                problems.at(s, format!("`{}` is not a Cedar entity type name", s.value));
            }
            s.value.as_str().into()
        }
    }
}

/// Test helper: a config's problems as `line:column message`, none when it is valid.
#[cfg(test)]
pub(super) fn problems(yaml: &str) -> Vec<String> {
    match super::model::Config::parse(yaml, std::path::Path::new("c.yaml")) {
        Ok(_) => vec![],
        Err(super::problems::ConfigError::Invalid { problems, .. }) => problems
            .into_iter()
            .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
            .collect(),
        Err(e) => vec![e.to_string()],
    }
}
