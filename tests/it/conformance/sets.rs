//! The three policy sets: each one's routes, as its `cedargate.yaml` states them (written out
//! again here so the expected answers never go through cedargate's route table), and how its
//! requests are drawn.
//!
//! Adding a set: a folder `tests/fixtures/conformance/<name>/` with `policies/` (`*.cedar`, one
//! `*.cedarschema`, `entities.json`), `provider.json`, `claims.json`, `complete-entities.json`
//! and a `cedargate.yaml` template; a `Spec` here; a `#[test]` calling `run` in
//! `conformance.rs`.

use serde_json::{Value, json};

/// One policy set: its routes (as its `cedargate.yaml` states them) and how requests are drawn.
pub struct Spec {
    pub name: &'static str,
    pub seed: u64,
    pub routes: &'static [Route],
    pub params: &'static [Param],
    /// The anonymous principal: `anonymous_type`, `anonymous_id`.
    pub anonymous: (&'static str, &'static str),
    /// `principal.parents`: claim → parent entity type.
    pub parent_claims: &'static [(&'static str, &'static str)],
    /// `principal.attributes`: Cedar attribute ← claim.
    pub attribute_claims: &'static [(&'static str, &'static str)],
    /// `x-region` header values drawn for a request (`None`: no header).
    pub regions: &'static [Option<&'static str>],
    /// The Cedar context the set's policies read: (authenticated, x-region) → record.
    pub context: fn(bool, Option<&str>) -> Value,
}

/// A route: method + path template → `Action::"<action>"` on `<type>::"<id template>"`;
/// `target: None` is a path no route matches (`unmatched_route: deny`).
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub target: Option<(&'static str, &'static str, &'static str)>,
}

/// Values a path parameter is drawn from: ids some source defines, and ids none does.
pub struct Param {
    pub name: &'static str,
    pub existing: &'static [&'static str],
    pub missing: &'static [&'static str],
}

const fn route(
    method: &'static str,
    path: &'static str,
    action: &'static str,
    resource_type: &'static str,
    id: &'static str,
) -> Route {
    Route {
        method,
        path,
        target: Some((action, resource_type, id)),
    }
}

const fn unrouted(method: &'static str, path: &'static str) -> Route {
    Route {
        method,
        path,
        target: None,
    }
}

// Tables: one line per route, as in each `cedargate.yaml`.

#[rustfmt::skip]
pub static GITHUB: Spec = Spec {
    name: "github",
    seed: 0x6769_7468_7562,
    routes: &[
        route("GET", "/repos/{repo}", "pull", "Repository", "{repo}"),
        route("DELETE", "/repos/{repo}", "delete_repository", "Repository", "{repo}"),
        route("POST", "/repos/{repo}/forks", "fork", "Repository", "{repo}"),
        route("POST", "/repos/{repo}/git/refs", "push", "Repository", "{repo}"),
        route("POST", "/repos/{repo}/issues", "create_issue", "Repository", "{repo}"),
        route("GET", "/repos/{repo}/issues/{id}", "read_issue", "Issue", "{repo}/{id}"),
        route("PATCH", "/repos/{repo}/issues/{id}", "edit_issue", "Issue", "{repo}/{id}"),
        route("DELETE", "/repos/{repo}/issues/{id}", "delete_issue", "Issue", "{repo}/{id}"),
        route("POST", "/repos/{repo}/issues/{id}/assignees", "assign_issue", "Issue", "{repo}/{id}"),
        route("GET", "/orgs/{org}", "read_org", "Org", "{org}"),
        route("PATCH", "/orgs/{org}", "manage_org", "Org", "{org}"),
        unrouted("GET", "/repos/{repo}/wiki"),
        unrouted("PUT", "/repos/{repo}"),
    ],
    params: &[
        Param { name: "repo", existing: &["cedar", "envoy", "docs", "vault"], missing: &["nope"] },
        Param { name: "id", existing: &["1", "2"], missing: &["3", "99"] },
        Param { name: "org", existing: &["acme"], missing: &["globex"] },
    ],
    anonymous: ("Anonymous", "anonymous"),
    parent_claims: &[("groups", "UserGroup"), ("teams", "Team")],
    attribute_claims: &[],
    regions: &[None],
    context: |_, _| json!({}),
};

#[rustfmt::skip]
pub static DOCSHARE: Spec = Spec {
    name: "docshare",
    seed: 0x646f_6373_6861,
    routes: &[
        route("GET", "/docs/{id}", "ViewDocument", "Document", "{id}"),
        route("PUT", "/docs/{id}", "EditDocument", "Document", "{id}"),
        route("DELETE", "/docs/{id}", "DeleteDocument", "Document", "{id}"),
        route("POST", "/docs/{id}/comments", "CommentDocument", "Document", "{id}"),
        route("POST", "/docs/{id}/share", "ShareDocument", "Document", "{id}"),
        unrouted("GET", "/docs/{id}/history"),
    ],
    params: &[
        Param { name: "id", existing: &["d1", "d2", "d3", "d4", "d5", "d6"], missing: &["d7", "d99"] },
    ],
    anonymous: ("Public", "guest"),
    parent_claims: &[("groups", "Group")],
    attribute_claims: &[],
    regions: &[None],
    context: |authenticated, _| json!({ "is_authenticated": authenticated }),
};

#[rustfmt::skip]
pub static TENANTS: Spec = Spec {
    name: "tenants",
    seed: 0x7465_6e61_6e74,
    routes: &[
        route("GET", "/t/{tenant}", "ViewTenant", "Tenant", "{tenant}"),
        route("PUT", "/t/{tenant}/settings", "ManageTenant", "Tenant", "{tenant}"),
        route("GET", "/t/{tenant}/projects/{project}", "ViewProject", "Project", "{tenant}/{project}"),
        route("PUT", "/t/{tenant}/projects/{project}", "UpdateProject", "Project", "{tenant}/{project}"),
        route("DELETE", "/t/{tenant}/projects/{project}", "DeleteProject", "Project", "{tenant}/{project}"),
        route("GET", "/t/{tenant}/invoices/{invoice}", "ViewInvoice", "Invoice", "{tenant}/{invoice}"),
        route("POST", "/t/{tenant}/invoices/{invoice}/approve", "ApproveInvoice", "Invoice", "{tenant}/{invoice}"),
        unrouted("DELETE", "/t/{tenant}"),
    ],
    params: &[
        Param { name: "tenant", existing: &["acme", "globex", "initech"], missing: &["umbrella"] },
        Param { name: "project", existing: &["p1", "p2"], missing: &["p9"] },
        Param { name: "invoice", existing: &["i1", "i2"], missing: &["i9"] },
    ],
    anonymous: ("Anonymous", "anonymous"),
    parent_claims: &[("roles", "Role")],
    attribute_claims: &[("mfa", "mfa")],
    regions: &[None, None, Some("eu"), Some("us")],
    context: |authenticated, region| {
        let mut context = json!({ "is_authenticated": authenticated, "env": "prod" });
        if let Some(region) = region {
            context["region"] = json!(region);
        }
        context
    },
};
