//! A small application that filters a list through cedargate's Authorizer API.
//!
//! ```text
//! CEDARGATE_TOKEN=$(node idp/get-token.mjs --client-credentials --client orders-service --scope orders:read) \
//!   cargo run --example authorizer-filter -- --addr http://127.0.0.1:9191 \
//!     --principal 'User::"bob"' --action 'Action::"view"' --documents docs.json
//! ```
//!
//! Prints one JSON line: the visible document ids, and each decision. The caller's token comes
//! from `CEDARGATE_TOKEN` (never a command-line argument: those show in `ps`). With
//! `--load SECONDS` it measures instead: `--documents` as one batch per call (`--mode batch`)
//! or one document per `IsAuthorized` call (`--mode single`), with `--concurrency` clients.

#[path = "filter.rs"]
mod filter;

use std::time::Duration;

use serde_json::{Value, json};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let addr = arg(&args, "--addr").unwrap_or_else(|| "http://127.0.0.1:9191".into());
    let token = std::env::var("CEDARGATE_TOKEN").map_err(|_| "set CEDARGATE_TOKEN")?;
    let documents: Vec<Value> = match arg(&args, "--documents") {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path)?)?,
        None => filter::documents(100),
    };
    if let Some(seconds) = arg(&args, "--load") {
        let batch = arg(&args, "--mode").as_deref() != Some("single");
        let concurrency = arg(&args, "--concurrency").map_or(Ok(4), |c| c.parse())?;
        let run = filter::load(
            &addr,
            &token,
            &documents,
            batch,
            concurrency,
            Duration::from_secs_f64(seconds.parse()?),
        )
        .await?;
        println!(
            "{}",
            json!({
                "mode": if batch { "batch" } else { "single" },
                "concurrency": concurrency,
                "calls": run.calls,
                "items": run.items,
                "calls_per_second": run.calls as f64 / run.elapsed.as_secs_f64(),
                "items_per_second": run.items as f64 / run.elapsed.as_secs_f64(),
                "p50_us": run.p50.as_micros() as u64,
                "p99_us": run.p99.as_micros() as u64,
            })
        );
        return Ok(());
    }
    let principal = arg(&args, "--principal").unwrap_or_else(|| "User::\"bob\"".into());
    let action = arg(&args, "--action").unwrap_or_else(|| "Action::\"view\"".into());
    let context: Value = serde_json::from_str(&arg(&args, "--context").unwrap_or("{}".into()))?;
    let mut client = filter::Filter::connect(&addr, &token).await?;
    match client
        .visible(&principal, &action, &documents, &context)
        .await
    {
        Ok(f) => {
            let decisions: Vec<Value> = f
                .decisions
                .iter()
                .map(|d| {
                    json!({
                        "allow": d.effect == cedargate_api::v1::Effect::Allow as i32,
                        "reason": d.reason,
                        "policies": d.policies.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            println!(
                "{}",
                json!({ "visible": f.visible, "decisions": decisions, "batch_id": f.batch_id })
            );
            Ok(())
        }
        Err(status) => {
            eprintln!("error: {:?}: {}", status.code(), status.message());
            std::process::exit(2);
        }
    }
}
