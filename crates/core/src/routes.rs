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

/// How bad a [`RouteLint`] finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LintSeverity {
    /// The table has a route that can never match (or a duplicate): refused at load.
    Error,
    /// Routes overlap: legal, first match wins, but likely not what was meant.
    Warning,
}

/// One finding of [`RouteTable::lint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLint {
    /// Index of the route the finding is about (the later one of a pair).
    pub route: usize,
    /// Error or warning.
    pub severity: LintSeverity,
    /// What is wrong and what to do, naming the other route(s) through the caller's label.
    pub message: String,
}

impl Segment {
    /// True when this segment matches the one path segment `text`, exactly as
    /// [`PathTemplate::matches`] judges it.
    fn matches_text(&self, text: &str) -> bool {
        match self {
            Segment::Literal(lit) => lit == text,
            Segment::Param { prefix, suffix, .. } => text
                .strip_prefix(prefix.as_str())
                .and_then(|t| t.strip_suffix(suffix.as_str()))
                .is_some_and(|v| !v.is_empty()),
            Segment::Rest(_) => !text.is_empty(),
        }
    }

    /// True when every text `inner` matches, `self` matches too (neither is `Rest`).
    fn covers(&self, inner: &Segment) -> bool {
        match (self, inner) {
            (_, Segment::Literal(text)) => self.matches_text(text),
            (
                Segment::Param { prefix, suffix, .. },
                Segment::Param {
                    prefix: inner_prefix,
                    suffix: inner_suffix,
                    ..
                },
            ) => {
                inner_prefix.starts_with(prefix.as_str()) && inner_suffix.ends_with(suffix.as_str())
            }
            _ => false,
        }
    }

    /// True when some text matches both (neither is `Rest`).
    fn meets(&self, other: &Segment) -> bool {
        match (self, other) {
            (Segment::Literal(text), s) | (s, Segment::Literal(text)) => s.matches_text(text),
            (
                Segment::Param { prefix, suffix, .. },
                Segment::Param {
                    prefix: other_prefix,
                    suffix: other_suffix,
                    ..
                },
            ) => {
                // A long enough middle fits both once the prefixes (and the suffixes) agree.
                (prefix.starts_with(other_prefix.as_str())
                    || other_prefix.starts_with(prefix.as_str()))
                    && (suffix.ends_with(other_suffix.as_str())
                        || other_suffix.ends_with(suffix.as_str()))
            }
            _ => false,
        }
    }
}

impl PathTemplate {
    /// True when every path `inner` matches, `self` matches too: provably, segment by segment
    /// under [`PathTemplate::matches`]' rules (a `{rest*}` takes one or more segments whose
    /// joined text is not empty; a trailing slash is the same path). `false` when in doubt.
    pub fn covers(&self, inner: &PathTemplate) -> bool {
        for (i, outer) in self.segments.iter().enumerate() {
            if matches!(outer, Segment::Rest(_)) {
                let rest = inner.segments.get(i..).unwrap_or(&[]);
                return match rest {
                    // Nothing left: `inner` matches paths this rest can't (it needs a segment).
                    [] => false,
                    // `/files/` (a last empty literal) matches `/files/`, whose rest is empty.
                    [Segment::Literal(text)] => !text.is_empty(),
                    _ => true,
                };
            }
            match inner.segments.get(i) {
                Some(Segment::Rest(_)) | None => return false,
                Some(segment) if !outer.covers(segment) => return false,
                Some(_) => {}
            }
        }
        inner.segments.len() == self.segments.len()
    }

    /// True when some path matches both (an over-approximation only where a `{rest*}` meets
    /// segments that match nothing, e.g. an empty literal). Checked against the matcher in
    /// `cover_and_overlap_agree_with_the_matcher_on_every_small_path`.
    pub fn overlaps(&self, other: &PathTemplate) -> bool {
        let mut pairs = self.segments.iter().zip(&other.segments);
        for (a, b) in pairs.by_ref() {
            if matches!(a, Segment::Rest(_)) || matches!(b, Segment::Rest(_)) {
                return true;
            }
            if !a.meets(b) {
                return false;
            }
        }
        let (short, long) = if self.segments.len() <= other.segments.len() {
            (self, other)
        } else {
            (other, self)
        };
        // Same length; or one more segment that is empty, the trailing slash the shorter
        // template also accepts (`/a` and `/a/` both match `/a/`).
        long.segments.len() == short.segments.len()
            || (long.segments.len() == short.segments.len() + 1
                && matches!(long.segments.last(), Some(Segment::Literal(l)) if l.is_empty()))
    }
}

/// Methods a route takes: `None` for any.
fn method_set(route: &Route) -> Option<&[String]> {
    (!route.methods.is_empty()).then_some(route.methods.as_slice())
}

/// True when `outer`'s service and host accept every request `inner`'s accept.
fn filters_cover(outer: &Route, inner: &Route) -> bool {
    let covers = |o: &Option<String>, i: &Option<String>| o.is_none() || o == i;
    covers(&outer.service, &inner.service) && covers(&outer.host, &inner.host)
}

/// True when some request passes both routes' service and host filters.
fn filters_meet(a: &Route, b: &Route) -> bool {
    let meet = |x: &Option<String>, y: &Option<String>| x.is_none() || y.is_none() || x == y;
    meet(&a.service, &b.service) && meet(&a.host, &b.host)
}

/// True when `route` takes requests with `method` (`None`: methods outside every list).
fn takes(route: &Route, method: Option<&str>) -> bool {
    match (method_set(route), method) {
        (None, _) => true,
        (Some(list), Some(m)) => list.iter().any(|l| l == m),
        (Some(_), None) => false,
    }
}

impl RouteTable {
    /// Findings about the table as a whole: routes that can never match because earlier ones
    /// take every request they would (errors; a duplicate is the plainest case), and routes
    /// that share requests with an earlier one without containing it (warnings). An earlier
    /// route that is strictly narrower than a later one (`/orders/status` before
    /// `/orders/{id}`) is the usual way to carve out an exception and is not reported.
    /// `label` names another route in messages (the caller knows its line).
    pub fn lint(&self, label: impl Fn(usize) -> String) -> Vec<RouteLint> {
        let mut out = Vec::new();
        for (j, later) in self.routes.iter().enumerate() {
            let earlier = self.routes.get(..j).unwrap_or(&[]);
            let finding = |severity, message| RouteLint {
                route: j,
                severity,
                message,
            };
            if let Some(i) = earlier.iter().position(|e| {
                e.service == later.service
                    && e.host == later.host
                    && same_methods(e, later)
                    && e.template == later.template
            }) {
                out.push(finding(
                    LintSeverity::Error,
                    format!(
                        "route `{}` repeats route {}: same service, host, methods and path; remove one",
                        later.name,
                        label(i)
                    ),
                ));
                continue;
            }
            // The earlier route that takes each of this route's methods, if any.
            let methods: Vec<Option<&str>> = match method_set(later) {
                None => vec![None],
                Some(list) => list.iter().map(|m| Some(m.as_str())).collect(),
            };
            let taken: Vec<Option<usize>> = methods
                .iter()
                .map(|m| {
                    earlier.iter().position(|e| {
                        filters_cover(e, later)
                            && takes(e, *m)
                            && e.template.covers(&later.template)
                    })
                })
                .collect();
            if let Some(by) = taken.iter().copied().collect::<Option<Vec<usize>>>() {
                let mut by = by;
                by.dedup();
                let names: Vec<String> =
                    by.iter().map(|&i| format!("route {}", label(i))).collect();
                out.push(finding(
                    LintSeverity::Error,
                    format!(
                        "route `{}` can never match: {} {} first and {} every request it would; move it above, or remove it",
                        later.name,
                        names.join(" and "),
                        if names.len() == 1 { "comes" } else { "come" },
                        if names.len() == 1 { "matches" } else { "match" },
                    ),
                ));
                continue;
            }
            for (m, by) in methods.iter().zip(&taken) {
                if let (Some(m), Some(i)) = (m, by) {
                    out.push(finding(
                        LintSeverity::Warning,
                        format!(
                            "route `{}`: its {m} requests never reach it: route {} comes first and matches all of them",
                            later.name,
                            label(*i)
                        ),
                    ));
                }
            }
            for (i, e) in earlier.iter().enumerate() {
                if taken.contains(&Some(i)) {
                    continue;
                }
                let Some(shared) = shared_methods(e, later) else {
                    continue;
                };
                let narrower = filters_cover(later, e)
                    && later.template.covers(&e.template)
                    && method_set(e).is_some_and(|list| list.iter().all(|m| takes(later, Some(m))));
                if filters_meet(e, later) && e.template.overlaps(&later.template) && !narrower {
                    out.push(finding(
                        LintSeverity::Warning,
                        format!(
                            "route `{}` overlaps route {} on {shared}: a request matching both goes to the earlier one; make the paths disjoint, or put the narrower route first",
                            later.name,
                            label(i)
                        ),
                    ));
                }
            }
        }
        out
    }
}

/// True when both routes take exactly the same methods.
fn same_methods(a: &Route, b: &Route) -> bool {
    match (method_set(a), method_set(b)) {
        (None, None) => true,
        (Some(x), Some(y)) => x.iter().all(|m| y.contains(m)) && y.iter().all(|m| x.contains(m)),
        _ => false,
    }
}

/// The methods both routes take, in words; `None` when they share none.
fn shared_methods(a: &Route, b: &Route) -> Option<String> {
    match (method_set(a), method_set(b)) {
        (None, None) => Some("every method".to_string()),
        (Some(list), None) | (None, Some(list)) => Some(list.join(", ")),
        (Some(x), Some(y)) => {
            let both: Vec<&str> = x
                .iter()
                .filter(|m| y.contains(m))
                .map(String::as_str)
                .collect();
            (!both.is_empty()).then(|| both.join(", "))
        }
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

    /// A route bound to a host applies to that host only (exact, lower-case as `request`
    /// normalises it); other hosts fall through to the next route.
    #[test]
    fn a_host_route_matches_its_host_only() {
        let admin = Route {
            host: Some("admin.example.com".into()),
            ..route(None, &["GET"], "/orders/{id}")
        };
        let table = RouteTable::new(vec![admin, route(None, &[], "/{rest*}")]);
        let found = |host| {
            table
                .find(None, host, "GET", "/orders/1")
                .map(|m| (m.route.host.clone(), m.params))
        };
        assert_eq!(
            found("admin.example.com"),
            Some((
                Some("admin.example.com".to_string()),
                vec![("id".to_string(), "1".to_string())]
            ))
        );
        for other in [
            "api.example.com",
            "admin.example.com.evil",
            "example.com",
            "",
        ] {
            assert_eq!(
                found(other),
                Some((None, vec![("rest".to_string(), "orders/1".to_string())])),
                "{other}"
            );
        }
    }

    fn route(service: Option<&str>, methods: &[&str], path: &str) -> Route {
        Route {
            name: format!("{} {path}", methods.join(",")).trim().into(),
            service: service.map(str::to_string),
            host: None,
            methods: methods.iter().map(|m| (*m).to_string()).collect(),
            template: template(path),
            action: None,
            resource: None,
        }
    }

    #[test]
    fn template_cover_is_exact_on_the_cases_that_decide_it() {
        // (outer, inner, outer covers inner)
        for (outer, inner, want) in [
            ("/orders/{id}", "/orders/status", true),
            ("/orders/status", "/orders/{id}", false),
            ("/orders/{id}", "/orders/{other}", true),
            ("/orders/{id}", "/orders/{id}/items", false),
            ("/orders/{id}/items", "/orders/{id}", false),
            ("/{any*}", "/orders/{id}", true),
            ("/{any*}", "/", false),
            ("/orders/{p*}", "/orders", false),
            ("/orders/{p*}", "/orders/", false),
            ("/orders/{p*}", "/orders/{a}/{b}", true),
            ("/orders/{p*}", "/orders/{q*}", true),
            ("/orders/{id}", "/orders/{q*}", false),
            ("/a/{x}", "/a/v{x}", true),
            ("/a/v{x}", "/a/{x}", false),
            ("/a/{x}.json", "/a/v{x}.json", true),
            ("/a/{x}.json", "/a/{x}", false),
            ("/a/{x}", "/a/", false),
            ("/", "/", true),
        ] {
            assert_eq!(
                template(outer).covers(&template(inner)),
                want,
                "{outer} ⊇ {inner}"
            );
            // Whatever `covers` claims, the matcher agrees on sample paths.
            if want {
                for path in [
                    "/orders/status",
                    "/orders/7",
                    "/orders/7/items",
                    "/a/v1",
                    "/a/v1.json",
                    "/",
                    "/orders/a/b",
                ] {
                    if template(inner).matches(path).is_some() {
                        assert!(
                            template(outer).matches(path).is_some(),
                            "{outer} misses {path} of {inner}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn overlap_is_judged_segment_by_segment() {
        for (a, b, want) in [
            ("/a/{x}/c", "/a/b/{y}", true),
            ("/files/{n}.json", "/files/v{n}", true),
            ("/files/{n}.json", "/files/{n}.xml", false),
            ("/a/b", "/a/c", false),
            ("/a/{x}", "/a/{x}/{y}", false),
            ("/a/{r*}", "/a/b/c", true),
        ] {
            assert_eq!(template(a).overlaps(&template(b)), want, "{a} ∩ {b}");
        }
    }

    /// `covers` and `overlaps` checked against the matcher itself on every path built from a
    /// small alphabet of segments: a claimed cover is never contradicted by a path, and two
    /// templates some path matches both of always overlap.
    #[test]
    fn cover_and_overlap_agree_with_the_matcher_on_every_small_path() {
        let templates = [
            "/",
            "/a",
            "/a/",
            "/{x}",
            "/{x}/",
            "/a/{x}",
            "/a/v{x}",
            "/a/{x}.json",
            "/a/v{x}.json",
            "/a/status",
            "/a/{x}/b",
            "/a/b/{y}",
            "/{r*}",
            "/a/{r*}",
            "/a/{x}/{r*}",
            "/{x}/{y}",
            "/v{x}/{r*}",
            "/a//b",
            "/{x}s",
        ];
        let segments = [
            "", "a", "b", "v", "v1", "1", "status", "x.json", "v1.json", "as", "s",
        ];
        let mut paths = vec!["/".to_string()];
        let mut frontier = vec![String::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for prefix in &frontier {
                for seg in segments {
                    let p = format!("{prefix}/{seg}");
                    paths.push(p.clone());
                    next.push(p);
                }
            }
            frontier = next;
        }
        for a in templates {
            for b in templates {
                let (ta, tb) = (template(a), template(b));
                let both = paths
                    .iter()
                    .find(|p| ta.matches(p).is_some() && tb.matches(p).is_some());
                if let Some(p) = both {
                    assert!(ta.overlaps(&tb), "{a} and {b} both match {p}");
                }
                if ta.covers(&tb) {
                    for p in &paths {
                        if tb.matches(p).is_some() {
                            assert!(
                                ta.matches(p).is_some(),
                                "{a} claims to cover {b}, misses {p}"
                            );
                        }
                    }
                }
            }
        }
    }

    fn lint(routes: Vec<Route>) -> Vec<(usize, LintSeverity, String)> {
        RouteTable::new(routes)
            .lint(|i| format!("#{i}"))
            .into_iter()
            .map(|l| (l.route, l.severity, l.message))
            .collect()
    }

    #[test]
    fn unreachable_and_duplicate_routes_are_errors() {
        use LintSeverity::*;
        let got = lint(vec![
            route(Some("orders"), &["GET"], "/orders/{id}"),
            route(Some("orders"), &["GET"], "/orders/status"),
            route(Some("orders"), &["GET"], "/orders/{id}"),
            route(None, &["GET", "POST"], "/pay"),
            route(None, &["POST"], "/pay"),
        ]);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert_eq!(got[0].0, 1);
        assert_eq!(got[0].1, Error);
        assert_eq!(
            got[0].2,
            "route `GET /orders/status` can never match: route #0 comes first and matches every request it would; move it above, or remove it"
        );
        assert_eq!((got[1].0, got[1].1), (2, Error));
        assert!(
            got[1]
                .2
                .starts_with("route `GET /orders/{id}` repeats route #0"),
            "{}",
            got[1].2
        );
        assert_eq!((got[2].0, got[2].1), (4, Error));
        // Each method taken by a different earlier route: still unreachable, both named.
        let got = lint(vec![
            route(None, &["GET"], "/x/{id}"),
            route(None, &["POST"], "/x/{id}"),
            route(None, &["GET", "POST"], "/x/y"),
        ]);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].2.contains("route #0 and route #1 come first"),
            "{}",
            got[0].2
        );
    }

    #[test]
    fn a_route_reachable_by_some_request_is_never_an_error() {
        for routes in [
            // Specific before generic: the usual exception, nothing reported.
            vec![
                route(Some("orders"), &["GET"], "/orders/status"),
                route(Some("orders"), &["GET", "DELETE"], "/orders/{id}"),
            ],
            // Another service, another method, any method after a listed one.
            vec![
                route(Some("a"), &["GET"], "/x/{id}"),
                route(Some("b"), &["GET"], "/x/y"),
            ],
            vec![
                route(None, &["GET"], "/x/{id}"),
                route(None, &["POST"], "/x/y"),
            ],
            vec![route(None, &["GET"], "/x/{id}"), route(None, &[], "/x/y")],
            // A service-scoped route does not shadow an unscoped one.
            vec![route(Some("a"), &[], "/{r*}"), route(None, &[], "/x")],
        ] {
            let got = lint(routes);
            assert!(got.iter().all(|l| l.1 == LintSeverity::Warning), "{got:#?}");
        }
    }

    #[test]
    fn a_host_scoped_route_shadows_only_requests_to_its_host() {
        let on_host = |host: Option<&str>, path: &str| Route {
            host: host.map(str::to_string),
            ..route(None, &["GET"], path)
        };
        // The earlier route takes only a.example: the later, any-host route stays reachable.
        let got = lint(vec![
            on_host(Some("a.example"), "/x/{id}"),
            on_host(None, "/x/y"),
        ]);
        assert!(got.iter().all(|l| l.1 == LintSeverity::Warning), "{got:#?}");
        // The other way round, every request of the later route is the earlier one's.
        let got = lint(vec![
            on_host(None, "/x/{id}"),
            on_host(Some("a.example"), "/x/y"),
        ]);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!((got[0].0, got[0].1), (1, LintSeverity::Error));
        // Different hosts never meet: nothing to say.
        let got = lint(vec![
            on_host(Some("a.example"), "/x/{id}"),
            on_host(Some("b.example"), "/x/y"),
        ]);
        assert!(got.is_empty(), "{got:#?}");
    }

    #[test]
    fn partial_overlaps_are_warnings() {
        let got = lint(vec![
            route(None, &["GET"], "/a/{x}/c"),
            route(None, &["GET"], "/a/b/{y}"),
            route(None, &["GET"], "/p/{id}"),
            route(None, &["GET", "PUT"], "/p/q"),
        ]);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!((got[0].0, got[0].1), (1, LintSeverity::Warning));
        assert!(
            got[0].2.contains("overlaps route #0 on GET"),
            "{}",
            got[0].2
        );
        assert_eq!((got[1].0, got[1].1), (3, LintSeverity::Warning));
        assert_eq!(
            got[1].2,
            "route `GET,PUT /p/q`: its GET requests never reach it: route #2 comes first and matches all of them"
        );
    }

    /// The lint on small tables, every finding pinned: which route, how bad, and the words.
    #[test]
    fn lint_findings_are_exactly_these() {
        use LintSeverity::*;
        let on = |host: &str, r: Route| Route {
            host: Some(host.to_string()),
            ..r
        };
        let overlap = |name: &str, on: &str| {
            format!(
                "route `{name}` overlaps route #0 on {on}: a request matching both goes to the earlier one; make the paths disjoint, or put the narrower route first"
            )
        };
        let unreachable = |name: &str| {
            format!(
                "route `{name}` can never match: route #0 comes first and matches every request it would; move it above, or remove it"
            )
        };
        let repeats = |name: &str| {
            format!(
                "route `{name}` repeats route #0: same service, host, methods and path; remove one"
            )
        };
        type Finding = (usize, LintSeverity, String);
        let cases: Vec<(Vec<Route>, Vec<Finding>)> = vec![
            // Repeats: any method, and the same methods in another order.
            (
                vec![route(None, &[], "/x"), route(None, &[], "/x")],
                vec![(1, Error, repeats("/x"))],
            ),
            (
                vec![
                    route(None, &["GET", "POST"], "/x"),
                    route(None, &["POST", "GET"], "/x"),
                ],
                vec![(1, Error, repeats("POST,GET /x"))],
            ),
            // Fewer methods than the earlier route: unreachable, but not a repeat.
            (
                vec![
                    route(None, &["GET", "POST"], "/pay"),
                    route(None, &["POST"], "/pay"),
                ],
                vec![(1, Error, unreachable("POST /pay"))],
            ),
            // More methods: only the shared one is lost.
            (
                vec![
                    route(None, &["POST"], "/pay"),
                    route(None, &["GET", "POST"], "/pay"),
                ],
                vec![(
                    1,
                    Warning,
                    "route `GET,POST /pay`: its POST requests never reach it: route #0 comes first and matches all of them".to_string(),
                )],
            ),
            // The same path for another service or host: nothing shared, nothing to say.
            (
                vec![
                    route(Some("a"), &["GET"], "/x/{id}"),
                    route(Some("b"), &["GET"], "/x/{id}"),
                ],
                vec![],
            ),
            (
                vec![
                    on("a.example", route(None, &["GET"], "/x/{id}")),
                    on("b.example", route(None, &["GET"], "/x/{id}")),
                ],
                vec![],
            ),
            // A later route narrowed to a host or a service: unreachable, not a repeat.
            (
                vec![
                    route(None, &["GET"], "/x"),
                    on("a.example", route(None, &["GET"], "/x")),
                ],
                vec![(1, Error, unreachable("GET /x"))],
            ),
            (
                vec![route(None, &["GET"], "/x"), route(Some("a"), &["GET"], "/x")],
                vec![(1, Error, unreachable("GET /x"))],
            ),
            // An earlier route narrowed to a host (or service) shares requests with a wider one,
            // either way round.
            (
                vec![
                    on("a.example", route(None, &["GET"], "/a/{x}/c")),
                    route(None, &["GET"], "/a/b/{y}"),
                ],
                vec![(1, Warning, overlap("GET /a/b/{y}", "GET"))],
            ),
            (
                vec![
                    route(None, &["GET"], "/a/{x}/c"),
                    on("a.example", route(None, &["GET"], "/a/b/{y}")),
                ],
                vec![(1, Warning, overlap("GET /a/b/{y}", "GET"))],
            ),
            (
                vec![
                    route(Some("s"), &["GET"], "/a/{x}/c"),
                    route(None, &["GET"], "/a/b/{y}"),
                ],
                vec![(1, Warning, overlap("GET /a/b/{y}", "GET"))],
            ),
            (
                vec![
                    on("a.example", route(None, &["GET"], "/a/{x}/c")),
                    on("a.example", route(None, &["GET"], "/a/b/{y}")),
                ],
                vec![(1, Warning, overlap("GET /a/b/{y}", "GET"))],
            ),
            (
                vec![
                    route(Some("s"), &["GET"], "/a/{x}/c"),
                    route(Some("s"), &["GET"], "/a/b/{y}"),
                ],
                vec![(1, Warning, overlap("GET /a/b/{y}", "GET"))],
            ),
            // The methods they share, in words.
            (
                vec![
                    route(None, &[], "/a/{x}/c"),
                    route(None, &["GET", "PUT"], "/a/b/{y}"),
                ],
                vec![(1, Warning, overlap("GET,PUT /a/b/{y}", "GET, PUT"))],
            ),
            (
                vec![
                    route(None, &["GET", "PUT"], "/a/{x}/c"),
                    route(None, &[], "/a/b/{y}"),
                ],
                vec![(1, Warning, overlap("/a/b/{y}", "GET, PUT"))],
            ),
            (
                vec![route(None, &[], "/a/{x}/c"), route(None, &[], "/a/b/{y}")],
                vec![(1, Warning, overlap("/a/b/{y}", "every method"))],
            ),
            (
                vec![
                    route(None, &["GET", "PUT"], "/a/{x}/c"),
                    route(None, &["PUT", "POST"], "/a/b/{y}"),
                ],
                vec![(1, Warning, overlap("PUT,POST /a/b/{y}", "PUT"))],
            ),
            (
                vec![
                    route(None, &["GET"], "/a/{x}/c"),
                    route(None, &["POST"], "/a/b/{y}"),
                ],
                vec![],
            ),
            // Specific before generic, the usual exception: nothing to say.
            (
                vec![
                    route(Some("orders"), &["GET"], "/orders/status"),
                    route(Some("orders"), &["GET", "DELETE"], "/orders/{id}"),
                ],
                vec![],
            ),
            // ... unless the generic route lacks a method of the specific one, or is scoped
            // narrower: then requests the author may have meant for it go elsewhere.
            (
                vec![
                    route(None, &["GET", "POST"], "/orders/status"),
                    route(None, &["GET"], "/orders/{id}"),
                ],
                vec![(1, Warning, overlap("GET /orders/{id}", "GET"))],
            ),
            (
                vec![
                    route(None, &["GET"], "/orders/status"),
                    route(Some("orders"), &["GET"], "/orders/{id}"),
                ],
                vec![(1, Warning, overlap("GET /orders/{id}", "GET"))],
            ),
        ];
        for (routes, want) in cases {
            let names: Vec<String> = routes.iter().map(|r| r.name.to_string()).collect();
            let got = lint(routes);
            assert_eq!(got, want, "{names:?}");
        }
    }
}
