//! The route table: which configured route an HTTP request hits, and what it captures.
//!
//! A route matches on Envoy's `context_extensions.service` (when the route names one), host,
//! method and a path template such as `/orders/{id}` or `/files/{path*}`. Routes are tried in file
//! order; the first match wins. This module is pure: no IO, no Cedar types.

use std::sync::Arc;

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    /// The template as written, e.g. `/orders/{id}`; it names the default action.
    source: Arc<str>,
    /// Its segments, in order.
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Must equal this text.
    Literal(String),
    /// Captures the non-empty text of one segment between a fixed prefix and suffix: `{id}`
    /// (both empty), `{role}s`, `v{version}`, `{name}.json`. One parameter per segment, so the
    /// capture is always unambiguous.
    Param {
        /// The parameter's name.
        name: String,
        /// Text the segment must start with.
        prefix: String,
        /// Text the segment must end with.
        suffix: String,
    },
    /// Captures the rest of the path (a whole segment, and the last one).
    Rest(String),
}

impl PathTemplate {
    /// Parses `/a/{b}/c`, `/a/{b}s`, `/v{n}/x` or `/a/{rest*}`.
    pub fn parse(template: &str) -> Result<PathTemplate, String> {
        let Some(body) = template.strip_prefix('/') else {
            return Err(format!("path `{template}` must start with `/`"));
        };
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        let last = parts.len().saturating_sub(1);
        let mut segments: Vec<Segment> = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = segment(template, part, i == last)?;
            if let Segment::Param { name, .. } | Segment::Rest(name) = &segment
                && segments.iter().any(
                    |s| matches!(s, Segment::Param { name: n, .. } | Segment::Rest(n) if n == name),
                )
            {
                return Err(format!(
                    "path `{template}`: parameter `{name}` appears twice; give each parameter its own name"
                ));
            }
            segments.push(segment);
        }
        Ok(PathTemplate {
            source: template.into(),
            segments,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Names of the parameters this template captures.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param { name, .. } | Segment::Rest(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Matches a request path (no query string); returns the captured parameters.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let body = path.strip_prefix('/')?;
        let mut parts = if body.is_empty() {
            None
        } else {
            Some(body.split('/'))
        };
        let mut params = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(lit) => {
                    if parts.as_mut()?.next()? != lit {
                        return None;
                    }
                }
                Segment::Param {
                    name,
                    prefix,
                    suffix,
                } => {
                    let value = parts
                        .as_mut()?
                        .next()?
                        .strip_prefix(prefix.as_str())?
                        .strip_suffix(suffix.as_str())?;
                    if value.is_empty() {
                        return None;
                    }
                    params.push((name.clone(), value.to_string()));
                }
                Segment::Rest(name) => {
                    let rest = parts.take()?.collect::<Vec<_>>().join("/");
                    // A rest parameter captures at least one non-empty segment.
                    if rest.is_empty() {
                        return None;
                    }
                    params.push((name.clone(), rest));
                    return Some(params);
                }
            }
        }
        match parts.as_mut().and_then(Iterator::next) {
            // A trailing slash (`/orders/`) is the same route as `/orders`.
            Some("") if parts.as_mut().and_then(Iterator::next).is_none() => Some(params),
            Some(_) => None,
            None => Some(params),
        }
    }
}

/// One segment of `template`: literal text, or at most one `{name}` with literal text around it,
/// or a whole-segment `{name*}` when it is the `last` segment. Each error says what is wrong with
/// this segment as written.
fn segment(template: &str, part: &str, last: bool) -> Result<Segment, String> {
    let Some((prefix, after_open)) = part.split_once('{') else {
        if part.contains('}') {
            return Err(format!(
                "path `{template}`: `{part}` has a `}}` with no `{{` before it"
            ));
        }
        return Ok(Segment::Literal(part.to_string()));
    };
    if prefix.contains('}') {
        return Err(format!(
            "path `{template}`: `{part}` has a `}}` with no `{{` before it"
        ));
    }
    let Some((inner, suffix)) = after_open.split_once('}') else {
        return Err(format!(
            "path `{template}`: `{part}` opens a parameter with `{{` and never closes it with `}}`"
        ));
    };
    if suffix.contains(['{', '}']) {
        return Err(format!(
            "path `{template}`: `{part}` holds more than one parameter; a segment may hold one, so that what each captures is unambiguous"
        ));
    }
    let (name, rest) = match inner.strip_suffix('*') {
        Some(n) => (n, true),
        None => (inner, false),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "path `{template}`: parameter `{{{inner}}}` must be `{{name}}` with letters, digits or `_`"
        ));
    }
    if rest && (!prefix.is_empty() || !suffix.is_empty()) {
        return Err(format!(
            "path `{template}`: `{part}`: `{{{inner}}}` captures the rest of the path, so it must be a whole segment"
        ));
    }
    if rest && !last {
        return Err(format!(
            "path `{template}`: `{part}` captures the rest of the path, so it must come last"
        ));
    }
    Ok(if rest {
        Segment::Rest(name.to_string())
    } else {
        Segment::Param {
            name: name.to_string(),
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        }
    })
}

/// One configured route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name for logs (defaults to the path template).
    pub name: Arc<str>,
    /// Must equal Envoy's `context_extensions.service` when set.
    pub service: Option<String>,
    /// Must equal the request host (port ignored, lower case) when set.
    pub host: Option<String>,
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    /// The path template.
    pub template: PathTemplate,
    /// Action id override; default `"<METHOD> <template>"`.
    pub action: Option<Arc<str>>,
    /// Resource override: entity type and an id template with `{param}`, `{service}`, `{host}`.
    pub resource: Option<(Arc<str>, String)>,
}

/// A route that matched, with its captures.
#[derive(Debug, Clone)]
pub struct RouteMatch<'a> {
    /// The route.
    pub route: &'a Route,
    /// Captured path parameters, in template order.
    pub params: Vec<(String, String)>,
}

/// Routes in file order.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Tried first to last.
    routes: Vec<Route>,
}

impl RouteTable {
    /// A table of `routes`, tried in order.
    pub fn new(routes: Vec<Route>) -> RouteTable {
        RouteTable { routes }
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when no routes are configured.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// All routes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The first route matching the request. `host` is lower-case without port; `path` has no
    /// query string.
    pub fn find(
        &self,
        service: Option<&str>,
        host: &str,
        method: &str,
        path: &str,
    ) -> Option<RouteMatch<'_>> {
        self.routes.iter().find_map(|route| {
            if route.service.as_deref().is_some_and(|s| Some(s) != service) {
                return None;
            }
            if route.host.as_deref().is_some_and(|h| h != host) {
                return None;
            }
            if !route.methods.is_empty() && !route.methods.iter().any(|m| m == method) {
                return None;
            }
            let params = route.template.matches(path)?;
            Some(RouteMatch { route, params })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(t: &str) -> PathTemplate {
        match PathTemplate::parse(t) {
            Ok(t) => t,
            Err(e) => unreachable!("{e}"),
        }
    }

    #[test]
    fn templates_match_as_documented() {
        type Case<'a> = (&'a str, &'a str, Option<&'a [(&'a str, &'a str)]>);
        let cases: &[Case] = &[
            ("/orders", "/orders", Some(&[])),
            ("/orders", "/orders/", Some(&[])),
            ("/orders", "/orders/1", None),
            ("/orders/{id}", "/orders/42", Some(&[("id", "42")])),
            ("/orders/{id}", "/orders/", None),
            ("/orders/{id}", "/orders", None),
            ("/orders/{id}", "/orders/42/items", None),
            (
                "/t/{tenant}/o/{id}",
                "/t/acme/o/7",
                Some(&[("tenant", "acme"), ("id", "7")]),
            ),
            (
                "/files/{path*}",
                "/files/a/b/c.txt",
                Some(&[("path", "a/b/c.txt")]),
            ),
            ("/files/{path*}", "/files", None),
            ("/", "/", Some(&[])),
            ("/", "/x", None),
            ("/{any*}", "/x/y", Some(&[("any", "x/y")])),
            // A parameter with literal text around it, inside one segment.
            (
                "/api/{role}s/{id}",
                "/api/admins/7",
                Some(&[("role", "admin"), ("id", "7")]),
            ),
            ("/api/{role}s/{id}", "/api/admin/7", None),
            ("/api/{role}s/{id}", "/api/s/7", None),
            (
                "/v{version}/orders",
                "/v2/orders",
                Some(&[("version", "2")]),
            ),
            ("/v{version}/orders", "/v/orders", None),
            ("/v{version}/orders", "/x2/orders", None),
            (
                "/files/{name}.json",
                "/files/a.b.json",
                Some(&[("name", "a.b")]),
            ),
            ("/files/{name}.json", "/files/.json", None),
            ("/x/pre-{id}-post", "/x/pre-1-post", Some(&[("id", "1")])),
            ("/x/pre-{id}-post", "/x/pre--post", None),
            ("/x/pre-{id}-post", "/x/pre-post", None),
        ];
        for (t, path, want) in cases {
            let got = template(t).matches(path);
            let want = want.map(|w| {
                w.iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "template {t} path {path}");
        }
    }

    /// The whole message for each refused template: it says what is wrong as written.
    #[test]
    fn bad_templates_are_rejected_saying_what_is_wrong() {
        for (t, message) in [
            ("orders", "path `orders` must start with `/`"),
            (
                "/orders/{id",
                "path `/orders/{id`: `{id` opens a parameter with `{` and never closes it with `}`",
            ),
            (
                "/orders/id}",
                "path `/orders/id}`: `id}` has a `}` with no `{` before it",
            ),
            (
                "/orders/}{id}",
                "path `/orders/}{id}`: `}{id}` has a `}` with no `{` before it",
            ),
            (
                "/orders/{}",
                "path `/orders/{}`: parameter `{}` must be `{name}` with letters, digits or `_`",
            ),
            (
                "/orders/{a-b}",
                "path `/orders/{a-b}`: parameter `{a-b}` must be `{name}` with letters, digits or `_`",
            ),
            (
                "/orders/{a}{b}",
                "path `/orders/{a}{b}`: `{a}{b}` holds more than one parameter; a segment may hold one, so that what each captures is unambiguous",
            ),
            (
                "/orders/{a}-{b}",
                "path `/orders/{a}-{b}`: `{a}-{b}` holds more than one parameter; a segment may hold one, so that what each captures is unambiguous",
            ),
            (
                "/files/{p*}/x",
                "path `/files/{p*}/x`: `{p*}` captures the rest of the path, so it must come last",
            ),
            (
                "/files/x{p*}",
                "path `/files/x{p*}`: `x{p*}`: `{p*}` captures the rest of the path, so it must be a whole segment",
            ),
            (
                "/t/{id}/o/{id}",
                "path `/t/{id}/o/{id}`: parameter `id` appears twice; give each parameter its own name",
            ),
        ] {
            match PathTemplate::parse(t) {
                Ok(_) => unreachable!("{t} parsed"),
                Err(e) => assert_eq!(e, message, "{t}"),
            }
        }
    }

    #[test]
    fn first_matching_route_wins_and_filters_apply() {
        let route = |name: &str, service: Option<&str>, methods: &[&str], path: &str| Route {
            name: name.into(),
            service: service.map(str::to_string),
            host: None,
            methods: methods.iter().map(|m| (*m).to_string()).collect(),
            template: template(path),
            action: None,
            resource: None,
        };
        let table = RouteTable::new(vec![
            route("a", Some("orders"), &["GET"], "/orders/{id}"),
            route("b", Some("orders"), &[], "/orders/{id}"),
            route("c", None, &[], "/{rest*}"),
        ]);
        let name = |service, method, path| {
            table
                .find(service, "h", method, path)
                .map(|m| m.route.name.to_string())
        };
        assert_eq!(
            name(Some("orders"), "GET", "/orders/1").as_deref(),
            Some("a")
        );
        assert_eq!(
            name(Some("orders"), "DELETE", "/orders/1").as_deref(),
            Some("b")
        );
        assert_eq!(
            name(Some("payments"), "GET", "/orders/1").as_deref(),
            Some("c")
        );
        assert_eq!(name(None, "GET", "/orders/1").as_deref(), Some("c"));
    }
}
