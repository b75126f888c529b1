//! The client side of the Authorizer API example: filter a list through `BatchIsAuthorized`.
//!
//! An application holds a list of its own documents (as Cedar entities: uid, attributes,
//! parents) and wants only those a user may see. One call asks about all of them; cedargate
//! answers one decision per document, in order, with the policies that decided. The caller
//! authenticates with its own access token (`authorization: Bearer …` metadata); the user it
//! asks about is data in the request.
//!
//! Also a small load generator (`load`) for BENCHMARKS.md: the same question as one batch of N
//! items, or as N `IsAuthorized` calls.

use std::time::{Duration, Instant};

use cedargate_api::v1::authorizer_client::AuthorizerClient;
use cedargate_api::v1::{
    BatchIsAuthorizedRequest, BatchItem, Decision, Effect, EntityUid, IsAuthorizedRequest,
};
use serde_json::{Value, json};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// A client that sends `token` as the caller's credential on every call.
pub struct Filter {
    client: AuthorizerClient<Channel>,
    authorization: MetadataValue<tonic::metadata::Ascii>,
}

/// The outcome of filtering one list.
#[derive(Debug)]
pub struct Filtered {
    /// Ids of the documents the principal may take the action on, in list order.
    pub visible: Vec<String>,
    /// Every decision, in list order.
    pub decisions: Vec<Decision>,
    /// The batch's id in the decision log.
    pub batch_id: String,
}

/// The string at `pointer` in `value` (empty when there is none).
fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `Type::"id"` → `EntityUid` (`User::"bob"` or `User::bob`).
pub fn uid(text: &str) -> EntityUid {
    let (ty, id) = text.rsplit_once("::").unwrap_or(("", text));
    EntityUid {
        r#type: ty.to_string(),
        id: id.trim_matches('"').to_string(),
    }
}

impl Filter {
    /// Connects to cedargate's gRPC port (`http://host:port`).
    pub async fn connect(addr: &str, token: &str) -> Result<Filter, Box<dyn std::error::Error>> {
        let client = AuthorizerClient::connect(addr.to_string()).await?;
        Ok(Filter {
            client,
            authorization: format!("Bearer {token}").parse()?,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// The documents of `documents` (Cedar entities JSON: an array of `{"uid": …, "attrs": …,
    /// "parents": …}`) that `principal` may take `action` on.
    pub async fn visible(
        &mut self,
        principal: &str,
        action: &str,
        documents: &[Value],
        context: &Value,
    ) -> Result<Filtered, tonic::Status> {
        let items = documents
            .iter()
            .map(|d| BatchItem {
                action: Some(uid(action)),
                resource: Some(EntityUid {
                    r#type: text(d, "/uid/type"),
                    id: text(d, "/uid/id"),
                }),
            })
            .collect();
        let request = self.request(BatchIsAuthorizedRequest {
            principal: Some(uid(principal)),
            items,
            context_json: context.to_string(),
            entities_json: Value::Array(documents.to_vec()).to_string(),
        });
        let answer = self.client.batch_is_authorized(request).await?.into_inner();
        let visible = answer
            .results
            .iter()
            .zip(documents)
            .filter(|(d, _)| d.effect == Effect::Allow as i32)
            .map(|(_, doc)| text(doc, "/uid/id"))
            .collect();
        Ok(Filtered {
            visible,
            decisions: answer.results,
            batch_id: answer.batch_id,
        })
    }

    /// One question.
    pub async fn is_authorized(
        &mut self,
        principal: &str,
        action: &str,
        resource: &str,
        context: &Value,
        entities: &[Value],
    ) -> Result<Decision, tonic::Status> {
        let request = self.request(IsAuthorizedRequest {
            principal: Some(uid(principal)),
            action: Some(uid(action)),
            resource: Some(uid(resource)),
            context_json: context.to_string(),
            entities_json: if entities.is_empty() {
                String::new()
            } else {
                Value::Array(entities.to_vec()).to_string()
            },
        });
        let answer = self.client.is_authorized(request).await?.into_inner();
        answer
            .decision
            .ok_or_else(|| tonic::Status::internal("an answer without a decision"))
    }
}

/// `n` documents with mixed owners, visibility, folders and locks: a list page to filter.
pub fn documents(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let owner = match i % 3 {
                0 => "alice",
                1 => "bob",
                _ => "carol",
            };
            let folder = if (i / 3) % 2 == 0 {
                "shared"
            } else {
                "private"
            };
            json!({
                "uid": { "type": "Document", "id": format!("doc-{i}") },
                "attrs": {
                    "owner": { "__entity": { "type": "User", "id": owner } },
                    "public": i % 5 == 0,
                    "locked": i % 7 == 0,
                },
                "parents": [{ "type": "Folder", "id": folder }],
            })
        })
        .collect()
}

/// What a load run measured.
#[derive(Debug)]
pub struct Load {
    /// Calls answered.
    pub calls: u64,
    /// Items decided (calls × items per call).
    pub items: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Median call latency.
    pub p50: Duration,
    /// 99th-percentile call latency.
    pub p99: Duration,
}

/// Drives `concurrency` clients for `duration`: each call asks about `documents` as one batch
/// (`batch`) or one at a time, round the list (`IsAuthorized`, one item per call).
pub async fn load(
    addr: &str,
    token: &str,
    documents: &[Value],
    batch: bool,
    concurrency: usize,
    duration: Duration,
) -> Result<Load, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut filter = Filter::connect(addr, token).await?;
        let documents = documents.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut items = 0u64;
            let context = json!({});
            // Single calls go round the same documents as the batch, so both do the same work.
            let mut next = 0usize;
            while started.elapsed() < duration {
                let t = Instant::now();
                if batch {
                    let f = filter
                        .visible("User::\"bob\"", "Action::\"view\"", &documents, &context)
                        .await?;
                    items += f.decisions.len() as u64;
                } else if let Some(document) = documents.get(next % documents.len().max(1)) {
                    next += 1;
                    let id = format!("Document::\"{}\"", text(document, "/uid/id"));
                    filter
                        .is_authorized(
                            "User::\"bob\"",
                            "Action::\"view\"",
                            &id,
                            &context,
                            std::slice::from_ref(document),
                        )
                        .await?;
                    items += 1;
                }
                latencies.push(t.elapsed());
            }
            Ok::<_, tonic::Status>((latencies, items))
        }));
    }
    let mut latencies = Vec::new();
    let mut items = 0;
    for task in tasks {
        let (l, n) = task.await??;
        latencies.extend(l);
        items += n;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Load {
        calls: latencies.len() as u64,
        items,
        elapsed,
        p50: at(0.5),
        p99: at(0.99),
    })
}
