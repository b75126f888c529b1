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
                    && match method_set(e) {
                        Some(list) => list.iter().all(|m| takes(later, Some(m))),
                        // Every method: narrower only if the later route takes every method too.
                        None => takes(later, None),
                    };
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
mod tests;
