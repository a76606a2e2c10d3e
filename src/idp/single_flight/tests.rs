use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_fetch_and_entries_expire() {
    let cache: Arc<SingleFlight<&str, u32>> = Arc::new(SingleFlight::new(8));
    let clock = Clock::tokio();
    let fetches = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let mut callers = Vec::new();
    for _ in 0..100 {
        let (cache, fetches, mut release_rx) = (cache.clone(), fetches.clone(), release_rx.clone());
        callers.push(tokio::spawn(async move {
            cache
                .get_or_fetch("k", &clock, || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let _ = release_rx.wait_for(|released| *released).await;
                    Ok::<_, ()>((7, clock.now() + 10))
                })
                .await
        }));
    }
    tokio::task::yield_now().await;
    release_tx.send_replace(true);
    for caller in callers {
        assert_eq!(caller.await.expect("joined"), Ok(7));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    tokio::time::advance(std::time::Duration::from_secs(11)).await;
    let value = cache
        .get_or_fetch("k", &clock, || async { Ok::<_, ()>((8, clock.now() + 10)) })
        .await;
    assert_eq!(value, Ok(8), "an expired entry is fetched again");
}

#[tokio::test]
async fn failures_are_not_cached_and_the_size_is_bounded() {
    let cache: SingleFlight<u32, u32> = SingleFlight::new(4);
    let clock = Clock::System;
    let failed = cache
        .get_or_fetch(1, &clock, || async { Err::<(u32, u64), _>("down") })
        .await;
    assert_eq!(failed, Err("down"));
    let value = cache
        .get_or_fetch(1, &clock, || async { Ok::<_, ()>((1, u64::MAX)) })
        .await;
    assert_eq!(value, Ok(1));
    for key in 0..100 {
        let _ = cache
            .get_or_fetch(key, &clock, || async { Ok::<_, ()>((key, u64::MAX)) })
            .await;
        assert!(cache.len() <= 4, "{}", cache.len());
    }
}
