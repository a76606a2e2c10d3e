//! Unit tests of the metrics: labels, text encoding, sharded counting.

use super::*;

/// The value of the sample line `name{labels}` in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn requests_are_counted_by_route_and_status_class() {
    let metrics = Metrics::new(true, 2);
    metrics.request(
        Some(1),
        StatusCode::OK,
        Duration::from_millis(3),
        Some(Duration::from_millis(2)),
    );
    metrics.request(Some(1), StatusCode::BAD_GATEWAY, Duration::from_millis(1), None);
    metrics.request(None, StatusCode::NOT_FOUND, Duration::from_micros(10), None);
    // A route index beyond the pre-created ones (a reloaded configuration).
    metrics.request(Some(7), StatusCode::OK, Duration::from_micros(10), None);
    let text = metrics.encode();
    assert_eq!(
        sample(&text, r#"approuter_requests_total{route="1",status_class="2xx"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"approuter_requests_total{route="1",status_class="5xx"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"approuter_requests_total{route="none",status_class="4xx"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"approuter_requests_total{route="7",status_class="2xx"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"approuter_request_duration_seconds_count{route="1"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, r#"approuter_upstream_duration_seconds_count{route="1"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"approuter_request_duration_seconds_bucket{le="0.005",route="1"}"#
        )
        .or_else(|| sample(
            &text,
            r#"approuter_request_duration_seconds_bucket{route="1",le="0.005"}"#
        )),
        Some(2.0)
    );
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn histogram_buckets_are_cumulative_in_the_text() {
    let histogram = Histogram::new(&[0.001, 0.01]);
    for micros in [500, 1000, 5000, 20_000] {
        histogram.observe(Duration::from_micros(micros));
    }
    assert_eq!(histogram.count(), 4);
    let mut registry = Registry::default();
    registry.register("h", "help", histogram);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("h_bucket{le=\"0.001\"} 2\n"), "{text}");
    assert!(text.contains("h_bucket{le=\"0.01\"} 3\n"), "{text}");
    assert!(text.contains("h_bucket{le=\"+Inf\"} 4\n"), "{text}");
    assert!(text.contains("h_sum 0.0265\n"), "{text}");
}

#[test]
fn counts_from_several_threads_add_up() {
    let counter = ShardedCounter::default();
    let histogram = Histogram::latency();
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                for _ in 0..1000 {
                    counter.inc();
                    histogram.observe(Duration::from_millis(2));
                }
            });
        }
    });
    assert_eq!(counter.get(), 6000);
    assert_eq!(histogram.count(), 6000);
}

#[test]
fn disabled_metrics_record_nothing() {
    let metrics = Metrics::new(false, 3);
    metrics.request(Some(0), StatusCode::OK, Duration::from_millis(1), None);
    metrics.login_started();
    let _guard = metrics.connection();
    let text = metrics.encode();
    assert!(!text.contains("approuter_requests_total{"), "{text}");
    assert_eq!(sample(&text, "approuter_logins_started_total"), Some(0.0));
    assert_eq!(sample(&text, "approuter_connections_active"), Some(0.0));
}
