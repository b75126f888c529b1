//! Liveness follows the decision-log writer (issue 16): the real `cedargate` binary writing its
//! decision log into a FIFO nobody reads. Once the pipe is full the writer blocks in `write`;
//! with records waiting and no progress for `WRITER_STALL_LIMIT`, `/healthz` answers 503 and
//! names the writer (decisions are no longer audited: a restart is the cure), while `/readyz`
//! and the Checks go on. When the reader comes back the writer catches up, `/healthz` is 200
//! again and no accepted record is lost.

use std::process::Command;
use std::time::{Duration, Instant};

use cedargate_server::decision_log::WRITER_STALL_LIMIT;

use crate::decision_logs::Served;
use crate::support::*;

/// `/healthz`: (status, body).
async fn healthz(admin: u16) -> (u16, String) {
    let r = reqwest::get(format!("http://127.0.0.1:{admin}/healthz"))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_while_the_decision_log_writer_is_stuck_and_recovers() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("decisions.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (drain_tx, drain_rx) = std::sync::mpsc::channel::<()>();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Read as _;
            // Opening blocks until cedargate opens the write end; then nobody reads for a while.
            let mut pipe = std::fs::File::open(&fifo).unwrap();
            drain_rx.recv().unwrap();
            let mut all = Vec::new();
            pipe.read_to_end(&mut all).unwrap();
            all
        })
    };
    let (grpc, admin) = (crate::stack::free_port(), crate::stack::free_port());
    let yaml = test_config_yaml(&idp.issuer, &fifo)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{grpc}"), 1)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{admin}"), 1);
    let config = dir.path().join("cedargate.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let served = Served::start_with_log(&config, grpc, admin, "warn").await;
    assert_eq!(healthz(admin).await, (200, "ok\n".to_string()));

    // ~1.5 KB records: a few dozen fill the 64 KiB pipe, the rest wait in the queue.
    let mut client = served.client().await;
    let bob = bearer(&token(&claims(&idp.issuer, "bob", &["staff"])));
    let first_check = Instant::now();
    let total = 300u64;
    for _ in 0..total {
        let answer = Answer::from(
            client
                .check(check_request(
                    "orders",
                    "GET",
                    "/orders/1",
                    &[("authorization", &bob)],
                ))
                .await
                .unwrap()
                .into_inner(),
        );
        assert_eq!(answer.status, 200, "Checks go on whatever the log does");
    }

    // Liveness fails, but not before the writer has been stuck for the limit.
    let deadline = first_check + WRITER_STALL_LIMIT + Duration::from_secs(15);
    let (body, failed_after) = loop {
        let (status, body) = healthz(admin).await;
        if status == 503 {
            break (body, first_check.elapsed());
        }
        assert_eq!(status, 200, "{body}");
        assert!(Instant::now() < deadline, "/healthz never failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("/healthz failed {failed_after:?} after the first Check: {body}");
    assert!(
        failed_after >= WRITER_STALL_LIMIT,
        "liveness failed before the stall limit: {failed_after:?}"
    );
    assert!(
        body.starts_with("stopped: decision-log writer (no progress for ")
            && body.contains(" records waiting)"),
        "{body}"
    );
    // Readiness is not liveness: the replica still answers Checks correctly.
    let readyz = reqwest::get(format!("http://127.0.0.1:{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 200);

    // The reader returns: the writer catches up and liveness recovers.
    drain_tx.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = healthz(admin).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, stderr) = served.stop();
    let written = reader.join().unwrap();
    let lines = String::from_utf8(written).unwrap().lines().count() as u64;
    assert_eq!(
        lines,
        total,
        "every record written once unstuck; stderr: {}",
        String::from_utf8_lossy(&stderr)
    );
}
