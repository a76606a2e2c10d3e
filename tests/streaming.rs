//! Bodies stream through the router: a 1 GiB download and a 1 GiB upload pass while the peak memory
//! of this process (client, router and backend all live here) grows by at most 64 MiB. This file has
//! one test so that nothing else runs in the process while it measures.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use support::{backend, client, gateway};

const GIB: u64 = 1024 * 1024 * 1024;
const ALLOWED_GROWTH: u64 = 64 * 1024 * 1024;
/// Generous: a debug build moves a few hundred MiB per second.
const PATIENCE: Duration = Duration::from_secs(300);

/// A field of /proc/self/status in bytes (`VmRSS`, `VmHWM`).
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    kib * 1024
}

/// The memory level the transfer is measured against. Resetting the peak to the current RSS
/// (`clear_refs` 5) makes VmHWM afterwards the peak of the transfer alone; where that is not
/// allowed, the peak so far is the baseline.
fn baseline() -> u64 {
    match std::fs::write("/proc/self/clear_refs", "5") {
        Ok(()) => proc_status("VmRSS"),
        Err(_) => proc_status("VmHWM"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_gib_each_way_streams_in_bounded_memory() {
    let backend = backend().await;
    let router = gateway(json!({
        "authenticationMethod": "none",
        "routes": [{"source": "^/(.*)$", "target": "/$1", "destination": "backend"}]
    }))
    .destinations(&[("backend", &backend.url())])
    .start()
    .await;
    let client = client();

    // Warm up connections and allocator pools so the baseline is not taken on a cold process.
    let warm = client.get(router.url("/bytes/1048576")).send().await.expect("warm-up");
    assert_eq!(warm.bytes().await.expect("warm-up body").len(), 1024 * 1024);

    let before = baseline();

    let download = async {
        let response = client
            .get(router.url(&format!("/bytes/{GIB}")))
            .send()
            .await
            .expect("download response");
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        let mut total: u64 = 0;
        while let Some(chunk) = stream.next().await {
            total += chunk.expect("download chunk").len() as u64;
        }
        total
    };
    let downloaded = tokio::time::timeout(PATIENCE, download)
        .await
        .expect("download timed out");
    assert_eq!(downloaded, GIB, "download incomplete");

    let upload = async {
        let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
        let chunks = (GIB / chunk.len() as u64) as usize;
        // Generated as it is sent: the same 64 KiB buffer, shared, never the whole body.
        let body = futures_util::stream::iter(0..chunks).map(move |_| Ok::<_, Infallible>(chunk.clone()));
        let response = client
            .post(router.url("/count"))
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .expect("upload response");
        assert_eq!(response.status(), 200);
        response.text().await.expect("upload answer")
    };
    let counted = tokio::time::timeout(PATIENCE, upload).await.expect("upload timed out");
    assert_eq!(counted, GIB.to_string(), "backend did not receive the whole upload");

    let peak = proc_status("VmHWM");
    let growth = peak.saturating_sub(before);
    assert!(
        growth <= ALLOWED_GROWTH,
        "peak RSS grew by {} MiB (baseline {} MiB, peak {} MiB)",
        growth / (1024 * 1024),
        before / (1024 * 1024),
        peak / (1024 * 1024)
    );
}
