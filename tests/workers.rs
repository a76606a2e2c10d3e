//! Serving on worker threads with a runtime each (as the binary does) and the per-thread upstream
//! pools: every request is answered, upstream connections are reused rather than opened per
//! request, a stop drains what is in flight, and the real binary runs its workers and exits
//! cleanly on SIGTERM.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use support::{backend, binary, client, gateway};

/// Ample for anything on loopback; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

fn public_routes() -> serde_json::Value {
    json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "target": "/$1", "destination": "backend"}]
    })
}

// The test's runtime is single-threaded like the binary's: it serves as one of the workers, and
// a connection must not move between threads (pools are per thread).
#[tokio::test]
async fn many_connections_are_all_answered_over_few_upstream_connections() {
    const CLIENTS: usize = 24;
    const REQUESTS: usize = 25;
    let backend = backend().await;
    let router = gateway(public_routes())
        .destinations(&[("backend", &backend.url())])
        .workers(2)
        .start()
        .await;
    let mut tasks = Vec::new();
    for client_index in 0..CLIENTS {
        // A client of its own: its own connection, landing on whichever worker accepts it.
        let url = router.url("");
        tasks.push(tokio::spawn(async move {
            let client = client();
            for request in 0..REQUESTS {
                let path = format!("/item/{client_index}/{request}");
                let response = client.get(format!("{url}{path}")).send().await.expect("response");
                assert_eq!(response.status(), 200, "{path}");
                let echo: serde_json::Value = response.json().await.expect("echo");
                assert_eq!(echo["path"], path, "answer of another request");
            }
        }));
    }
    tokio::time::timeout(PATIENCE, futures_util::future::try_join_all(tasks))
        .await
        .expect("requests stalled")
        .expect("a client failed");
    assert_eq!(backend.seen().len(), CLIENTS * REQUESTS);
    // At most one request per client connection is in flight, so no more upstream connections
    // than clients are ever needed; one per request would be CLIENTS * REQUESTS.
    assert!(
        backend.connections() <= CLIENTS,
        "{} upstream connections for {CLIENTS} clients",
        backend.connections()
    );
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    for workers in [1, 2] {
        let backend = backend().await;
        let router = gateway(public_routes())
            .destinations(&[("backend", &backend.url())])
            .workers(workers)
            .start()
            .await;
        let client = client();
        for request in 0..30 {
            // Bodies of several sizes: the connection goes back to the pool when each is read.
            let path = match request % 3 {
                0 => "/status/204".to_string(),
                1 => format!("/text/{}", 100 + request),
                _ => format!("/bytes/{}", 200_000 + request),
            };
            let response = client.get(router.url(&path)).send().await.expect("response");
            assert!(response.status().is_success(), "{path}: {}", response.status());
            response.bytes().await.expect("body");
        }
        assert_eq!(
            backend.connections(),
            1,
            "{workers} worker(s): sequential requests must share one upstream connection"
        );
    }
}

#[tokio::test]
async fn an_unread_response_body_does_not_leave_its_connection_in_the_pool() {
    let backend = backend().await;
    let router = gateway(public_routes())
        .destinations(&[("backend", &backend.url())])
        .start()
        .await;
    let client = client();
    // The client stops reading a large download and drops it: that upstream connection is in an
    // unknown state and must not carry the next request.
    let response = client
        .get(router.url("/bytes/50000000"))
        .send()
        .await
        .expect("response");
    let mut body = response.bytes_stream();
    body.next().await.expect("some body").expect("chunk");
    drop(body);
    for _ in 0..3 {
        let response = client.get(router.url("/after")).send().await.expect("response");
        assert_eq!(response.status(), 200);
        let echo: serde_json::Value = response.json().await.expect("echo");
        assert_eq!(echo["path"], "/after");
    }
    assert_eq!(
        backend.connections(),
        2,
        "a new connection after the abandoned one, then reuse"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_workers_finishes_the_download_in_flight() {
    const SIZE: usize = 20_000_000;
    let backend = backend().await;
    let router = gateway(public_routes())
        .destinations(&[("backend", &backend.url())])
        .workers(2)
        .start()
        .await;
    let addr = router.addr;
    let response = client()
        .get(router.url(&format!("/bytes/{SIZE}")))
        .send()
        .await
        .expect("download starts");
    let mut body = response.bytes_stream();
    let mut received = 0;
    while received < 1024 * 1024 {
        received += body.next().await.expect("more body").expect("chunk").len();
    }
    let stopping = tokio::spawn(router.stop());
    let rest = async {
        while let Some(chunk) = body.next().await {
            received += chunk.expect("the download must not be cut by the stop").len();
        }
    };
    tokio::time::timeout(PATIENCE, rest).await.expect("download stalled");
    assert_eq!(received, SIZE);
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("stop did not finish after the last request")
        .expect("stop task");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a worker still accepts after the stop"
    );
}

#[tokio::test]
async fn the_binary_serves_on_its_workers_and_exits_cleanly_on_sigterm() {
    let backend = backend().await;
    let dir = tempfile::tempdir().expect("temp dir");
    support::write_app(dir.path(), &public_routes(), &[]);
    let mut child = tokio::process::Command::new(binary())
        .arg("--dir")
        .arg(dir.path())
        .env_clear()
        .env(
            "destinations",
            json!([{"name": "backend", "url": backend.url()}]).to_string(),
        )
        .env("PORT", "0")
        .env("XS_BIND_ADDRESS", "127.0.0.1")
        .env("ADMIN_ADDRESS", "off")
        .env("TOKIO_WORKER_THREADS", "3")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the approuter binary");
    let url = support::listening_url(&mut child).await;

    let mut tasks = Vec::new();
    for index in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            for request in 0..10 {
                let response = client
                    .get(format!("{url}/binary/{index}/{request}"))
                    .send()
                    .await
                    .expect("response");
                assert_eq!(response.status(), 200);
            }
        }));
    }
    futures_util::future::try_join_all(tasks)
        .await
        .expect("a client failed");
    assert_eq!(backend.seen().len(), 80);

    assert_eq!(support::worker_threads(&child), 2, "TOKIO_WORKER_THREADS=3");
    let status = support::terminate(&mut child).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}
