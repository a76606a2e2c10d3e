use std::time::Duration;

use super::*;
use crate::session::User;

fn session() -> Arc<Session> {
    Arc::new(Session {
        user: User {
            name: "jane".into(),
            ..User::default()
        },
        access_token: "token".into(),
        refresh_token: None,
        expires_at: 0,
        refresh_at: 0,
        csrf_secret: None,
        backend_cookies: Vec::new(),
        login_at: 0,
    })
}

#[test]
fn session_ids_round_trip_and_reject_garbage() {
    let id = SessionId::generate();
    assert_eq!(SessionId::parse(id.to_cookie_value()), Some(id));
    assert_ne!(SessionId::generate(), id);
    for bad in ["", "abc", "s%3Aforged.sig", &"A".repeat(44), &"*".repeat(43)] {
        assert!(SessionId::parse(bad).is_none(), "{bad}");
    }
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_expire_and_use_slides_the_timeout() {
    let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
    let id = SessionId::generate();
    store.save(&id, session()).await.unwrap();
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(store.load(&id).await.unwrap().is_some());
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(store.load(&id).await.unwrap().is_some(), "use slid the timeout");
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(store.load(&id).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn peeking_does_not_slide_the_timeout() {
    let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
    let id = SessionId::generate();
    store.save(&id, session()).await.unwrap();
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(store.peek(&id).await.unwrap().is_some());
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(store.peek(&id).await.unwrap().is_none(), "a peek is not use");
    assert!(store.load(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn update_replaces_only_a_session_that_still_exists() {
    let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
    let id = SessionId::generate();
    assert!(!store.update(&id, session()).await.unwrap(), "never saved");
    store.save(&id, session()).await.unwrap();
    let mut newer = (*session()).clone();
    newer.access_token = "newer".into();
    assert!(store.update(&id, Arc::new(newer)).await.unwrap());
    assert_eq!(store.load(&id).await.unwrap().unwrap().access_token.as_str(), "newer");
    store.remove(&id).await.unwrap();
    assert!(!store.update(&id, session()).await.unwrap(), "removed stays removed");
    assert!(store.load(&id).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn sweep_returns_ended_sessions_once() {
    let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
    let id = SessionId::generate();
    store.save(&id, session()).await.unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(store.sweep().len(), 1);
    assert_eq!(store.sweep().len(), 0);
    assert!(store.is_empty());
}

#[tokio::test(start_paused = true)]
async fn login_attempts_are_single_use_and_expire() {
    let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
    let attempt = LoginAttempt {
        browser_binding: "b".into(),
        code_verifier: "v".into(),
        redirect_uri: "r".into(),
        return_to: "/".into(),
        tenant: None,
    };
    store.put_attempt("s1", attempt.clone()).await.unwrap();
    store.put_attempt("s2", attempt).await.unwrap();
    assert!(store.take_attempt("s1").await.unwrap().is_some());
    assert!(store.take_attempt("s1").await.unwrap().is_none());
    tokio::time::advance(Duration::from_secs(181)).await;
    assert!(store.take_attempt("s2").await.unwrap().is_none());
}

fn attempt(return_to: &str) -> LoginAttempt {
    LoginAttempt {
        browser_binding: "b".into(),
        code_verifier: "v".into(),
        redirect_uri: "r".into(),
        return_to: return_to.into(),
        tenant: None,
    }
}

#[tokio::test]
async fn a_flood_of_login_attempts_evicts_the_oldest_and_never_refuses() {
    let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180)).with_attempt_limits(3, 1 << 20);
    for state in ["s1", "s2", "s3", "s4", "s5"] {
        store.put_attempt(state, attempt("/")).await.expect("never refused");
    }
    assert_eq!(store.attempts_held().0, 3);
    for (state, held) in [("s1", false), ("s2", false), ("s3", true), ("s4", true), ("s5", true)] {
        assert_eq!(store.take_attempt(state).await.unwrap().is_some(), held, "{state}");
    }
    assert_eq!(store.attempts_held(), (0, 0));
}

#[tokio::test]
async fn the_default_cap_evicts_instead_of_refusing() {
    let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
    for index in 0..MAX_ATTEMPTS {
        store.put_attempt(&format!("s{index}"), attempt("/")).await.unwrap();
    }
    store
        .put_attempt("newest", attempt("/"))
        .await
        .expect("a flood never refuses a new login");
    assert_eq!(store.attempts_held().0, MAX_ATTEMPTS);
    assert!(store.take_attempt("s0").await.unwrap().is_none(), "the oldest went");
    assert!(store.take_attempt("newest").await.unwrap().is_some());
}

#[tokio::test]
async fn taken_attempts_do_not_count_towards_the_cap() {
    let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180)).with_attempt_limits(2, 1 << 20);
    for round in 0..100 {
        let state = format!("s{round}");
        store.put_attempt(&state, attempt("/")).await.unwrap();
        assert!(store.take_attempt(&state).await.unwrap().is_some());
    }
    store.put_attempt("a", attempt("/")).await.unwrap();
    store.put_attempt("b", attempt("/")).await.unwrap();
    assert!(
        store.take_attempt("a").await.unwrap().is_some(),
        "nothing taken was evicted in its place"
    );
    // A state stored again after a take, or over itself, is one attempt, whatever its old queue
    // slots say.
    store.put_attempt("b", attempt("/again")).await.unwrap();
    store.put_attempt("b", attempt("/again")).await.unwrap();
    assert_eq!(store.attempts_held().0, 1);
    store.put_attempt("c", attempt("/")).await.unwrap();
    store.put_attempt("d", attempt("/")).await.unwrap();
    assert_eq!(store.attempts_held().0, 2);
    assert!(
        store.take_attempt("b").await.unwrap().is_none(),
        "the oldest went first"
    );
}

#[tokio::test]
async fn long_return_paths_are_bounded_by_size() {
    let per_attempt = ATTEMPT_OVERHEAD + 3 + 3 + 4096;
    let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180))
        .with_attempt_limits(1_000, 10 * per_attempt);
    let long = format!("/{}", "x".repeat(4095));
    for index in 0..100 {
        store
            .put_attempt(&format!("s{index:02}"), attempt(&long))
            .await
            .unwrap();
    }
    let (count, bytes) = store.attempts_held();
    assert_eq!(count, 10);
    assert!(bytes <= 10 * per_attempt, "{bytes}");
    assert!(store.take_attempt("s99").await.unwrap().is_some());
    assert!(store.take_attempt("s89").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn expired_attempts_leave_on_the_next_store_or_sweep() {
    let store = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(180));
    store.put_attempt("old", attempt("/")).await.unwrap();
    tokio::time::advance(Duration::from_secs(181)).await;
    store.put_attempt("new", attempt("/")).await.unwrap();
    assert_eq!(store.attempts_held().0, 1);
    tokio::time::advance(Duration::from_secs(181)).await;
    store.sweep();
    assert_eq!(store.attempts_held(), (0, 0));
}
