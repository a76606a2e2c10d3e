//! Counters and histograms that many threads update without sharing cache lines: one slot per
//! thread group, added up when metrics are scraped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds (seconds) of the latency buckets: 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Slots per counter and histogram. Each thread writes to one slot (its own cache line), so two
/// cores counting the same series do not take the line from each other on every request; a
/// scrape adds the slots up.
const SHARDS: usize = 4;

/// The slot of the current thread, assigned round-robin on first use.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.try_with(|shard| *shard).unwrap_or(0)
}

#[derive(Default)]
#[repr(align(128))]
struct CounterSlot(AtomicU64);

/// A counter with one slot per `shard`.
#[derive(Clone)]
pub struct ShardedCounter(Arc<[CounterSlot; SHARDS]>);

impl Default for ShardedCounter {
    fn default() -> ShardedCounter {
        ShardedCounter(Arc::new(Default::default()))
    }
}

impl std::fmt::Debug for ShardedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ShardedCounter").field(&self.get()).finish()
    }
}

impl ShardedCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.0[shard()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// The total over every slot.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|slot| slot.0.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, u64, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// At most this many bucket bounds (plus +Inf).
const MAX_BOUNDS: usize = 15;

/// One slot of a histogram: the bucket counts (not cumulative) and the sum in microseconds.
#[derive(Default)]
#[repr(align(128))]
struct HistogramSlot {
    counts: [AtomicU64; MAX_BOUNDS + 1],
    sum_micros: AtomicU64,
}

/// A histogram of durations with atomic buckets, one slot per `shard`: observing takes no lock
/// (prometheus-client's own histogram takes a mutex on every observation, which every request
/// would contend for).
#[derive(Clone)]
pub struct Histogram(Arc<HistogramInner>);

struct HistogramInner {
    /// Upper bounds in microseconds, ascending; the last bucket (+Inf) is implied.
    bounds_micros: Vec<u64>,
    bounds: &'static [f64],
    slots: [HistogramSlot; SHARDS],
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// A histogram of request latencies: 0.5 ms to 10 s.
    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }

    /// A histogram with upper bounds `bounds` in seconds, ascending; bounds past the fifteenth are
    /// ignored.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        let bounds = &bounds[..bounds.len().min(MAX_BOUNDS)];
        Histogram(Arc::new(HistogramInner {
            bounds_micros: bounds.iter().map(|secs| (secs * 1e6).round() as u64).collect(),
            bounds,
            slots: Default::default(),
        }))
    }

    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let inner = &self.0;
        let bucket = inner.bounds_micros.partition_point(|bound| *bound < micros);
        let slot = &inner.slots[shard()];
        slot.counts[bucket].fetch_add(1, Ordering::Relaxed);
        slot.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The number of observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .slots
            .iter()
            .flat_map(|slot| slot.counts.iter())
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let inner = &self.0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .enumerate()
            .map(|(index, bound)| {
                let count = inner
                    .slots
                    .iter()
                    .map(|slot| slot.counts[index].load(Ordering::Relaxed))
                    .sum();
                (bound, count)
            })
            .collect();
        let count = buckets.iter().map(|(_, count)| count).sum();
        let sum_micros: u64 = inner
            .slots
            .iter()
            .map(|slot| slot.sum_micros.load(Ordering::Relaxed))
            .sum();
        encoder.encode_histogram::<NoLabelSet>(
            sum_micros as f64 / 1e6,
            count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
