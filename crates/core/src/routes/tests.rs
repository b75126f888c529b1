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
        format!("route `{name}` repeats route #0: same service, host, methods and path; remove one")
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
        // A narrower route first is the usual exception, with or without listed methods; with
        // every method before some methods it is still an overlap.
        (
            vec![route(None, &[], "/orders/status"), route(None, &[], "/orders/{id}")],
            vec![],
        ),
        (
            vec![
                route(None, &[], "/orders/status"),
                route(None, &["GET"], "/orders/{id}"),
            ],
            vec![(1, Warning, overlap("GET /orders/{id}", "GET"))],
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
