//! The `routes` section and `context.attributes`: each route checked into a [`Route`] (path
//! template, methods, action id, resource template whose placeholders the path must capture), the
//! table's lint placed at the routes' lines, and the named values `context.attributes` adds to
//! every request's Cedar context. Matching itself is `crate::routes`'s; this module must not match
//! requests.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::defaults::*;
use super::model::*;
use super::problems::Collected;
use super::raw::*;
use crate::routes::{LintSeverity, PathTemplate, Route, RouteTable};

pub(super) fn validate_route(
    spanned: &Spanned<RawRoute>,
    problems: &mut Collected,
) -> Option<Route> {
    let raw = &spanned.value;
    let template = match PathTemplate::parse(&raw.path.value) {
        Ok(t) => t,
        Err(msg) => {
            problems.at(&raw.path, msg);
            return None;
        }
    };
    let mut methods = Vec::new();
    for m in &raw.methods {
        let upper = m.value.to_ascii_uppercase();
        if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.at(m, format!("`{}` is not an HTTP method", m.value));
        } else {
            methods.push(upper);
        }
    }
    if let Some(action) = &raw.action {
        let uid = format!(
            "{ACTION_TYPE}::{}",
            serde_json::Value::from(action.as_str())
        );
        if cedar_policy::EntityUid::from_str(&uid).is_err() {
            problems.at(
                spanned,
                format!("action `{action}` is not a valid Cedar action id"),
            );
        }
    }
    let resource = raw.resource.as_ref().map(|r| {
        if cedar_policy::EntityTypeName::from_str(&r.entity_type.value).is_err() {
            problems.at(
                &r.entity_type,
                format!("`{}` is not a Cedar entity type name", r.entity_type.value),
            );
        }
        for param in placeholders(&r.id.value) {
            if !template.params().any(|p| p == param) && param != "service" && param != "host" {
                problems.at(
                    &r.id,
                    format!(
                        "resource id uses `{{{param}}}`, which the path `{}` does not capture",
                        raw.path.value
                    ),
                );
            }
        }
        (
            Arc::<str>::from(r.entity_type.value.as_str()),
            r.id.value.clone(),
        )
    });
    Some(Route {
        name: raw
            .name
            .clone()
            .unwrap_or_else(|| raw.path.value.clone())
            .into(),
        service: raw.service.clone(),
        host: raw.host.as_ref().map(|h| h.to_ascii_lowercase()),
        methods,
        template,
        action: raw.action.clone().map(Into::into),
        resource,
    })
}

/// The route-table lint ([`RouteTable::lint`]) at the routes' positions: a route that can never
/// match is a problem, an overlap a warning.
pub(super) fn lint_routes(
    routes: &RouteTable,
    spans: &[&Spanned<RawRoute>],
    problems: &mut Collected,
    warnings: &mut Collected,
) {
    let label = |i: usize| {
        let name = routes.iter().nth(i).map_or("", |r| &*r.name);
        match spans.get(i) {
            Some(span) => format!("`{name}` (line {})", span.referenced.line()),
            None => format!("`{name}`"),
        }
    };
    for finding in routes.lint(label) {
        let Some(span) = spans.get(finding.route) else {
            continue;
        };
        match finding.severity {
            LintSeverity::Error => problems.at(*span, finding.message),
            LintSeverity::Warning => warnings.at(*span, finding.message),
        }
    }
}

/// `{name}` placeholders in a resource id template.
pub(crate) fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name))
}

/// `context.attributes`: each names exactly one source; names are Cedar identifiers that don't
/// take a key cedargate writes itself.
pub(super) fn context_attributes(
    raw: &BTreeMap<String, Spanned<RawContextValue>>,
    problems: &mut Collected,
) -> Vec<(String, ContextValue)> {
    let mut out = Vec::new();
    for (name, spanned) in raw {
        let v = &spanned.value;
        if BUILTIN_CONTEXT_KEYS.contains(&name.as_str()) {
            problems.at(
                spanned,
                format!("context.attributes.{name}: `{name}` is written by cedargate itself; choose another name"),
            );
            continue;
        }
        if !is_identifier(name) {
            problems.at(
                spanned,
                format!("context.attributes: `{name}` is not a Cedar identifier (letters, digits, `_`; not starting with a digit or `__`)"),
            );
            continue;
        }
        let given = [
            v.fact.is_some(),
            v.claim.is_some(),
            v.header.is_some(),
            v.param.is_some(),
            v.value.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            problems.at(
                spanned,
                format!("context.attributes.{name} needs exactly one of fact, claim, header, param, value"),
            );
            continue;
        }
        let value = if let Some(fact) = &v.fact {
            match ContextFact::ALL.iter().find(|(n, _)| n == fact) {
                Some((_, f)) => ContextValue::Fact(*f),
                None => {
                    let names: Vec<&str> = ContextFact::ALL.iter().map(|(n, _)| *n).collect();
                    problems.at(
                        spanned,
                        format!(
                            "context.attributes.{name}: unknown fact `{fact}` (one of: {})",
                            names.join(", ")
                        ),
                    );
                    continue;
                }
            }
        } else if let Some(claim) = &v.claim {
            ContextValue::Claim(claim.clone())
        } else if let Some(header) = &v.header {
            let header = header.to_ascii_lowercase();
            if matches!(
                header.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            ) {
                problems.at(
                    spanned,
                    format!(
                        "context.attributes.{name} must not read `{header}`: it carries credentials"
                    ),
                );
                continue;
            }
            ContextValue::Header(header)
        } else if let Some(param) = &v.param {
            ContextValue::Param(param.clone())
        } else if let Some(value) = &v.value {
            match crate::cedar_value::cedar_value(value) {
                Some(cedar) if cedar == *value => ContextValue::Value(cedar),
                _ => {
                    problems.at(
                        spanned,
                        format!("context.attributes.{name}: value must be a string, integer, boolean, list or map of those"),
                    );
                    continue;
                }
            }
        } else {
            continue;
        };
        out.push((name.clone(), value));
    }
    out
}

/// A Cedar identifier that isn't reserved for Cedar's JSON escapes.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use crate::config::fields::problems;

    #[test]
    fn resource_placeholders_must_be_captured_by_the_path() {
        let yaml =
            "routes:\n  - path: /orders/{id}\n    resource: { type: Order, id: \"{order}\" }\n";
        let got = problems(yaml);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with("3:34 resource id uses `{order}`"),
            "{got:#?}"
        );
    }
}
