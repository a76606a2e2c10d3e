//! Resident memory per in-memory session: 100,000 logged-in sessions with XSUAA-sized tokens
//! (an access token of about 3 KB and a refresh token), stored through the `SessionStore` trait.
//! Prints the RSS growth per session next to the bytes of tokens each one holds.
//!
//! Run: `cargo bench --bench session_memory`.

use std::sync::Arc;
use std::time::Duration;

use approuter::session::{MemoryStore, Session, SessionId, SessionStore, User};

const SESSIONS: usize = 100_000;
const ACCESS_TOKEN_BYTES: usize = 3_000;
const REFRESH_TOKEN_BYTES: usize = 34;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn session(index: usize) -> Session {
    // Distinct contents per session, so nothing is shared by accident.
    let mut access_token = format!("eyJhbGciOiJSUzI1NiJ9.{index:08}.");
    access_token.extend(std::iter::repeat_n('x', ACCESS_TOKEN_BYTES - access_token.len()));
    Session {
        user: User {
            name: format!("user{index}@example.com"),
            email: Some(format!("user{index}@example.com")),
            given_name: Some("Jane".into()),
            family_name: Some("Doe".into()),
            user_id: Some(format!("{index:08}-1111-2222-3333-444455556666")),
            origin: Some("sap.default".into()),
            zone_id: Some("dev-zone".into()),
            tenant: Some("dev".into()),
            scopes: vec!["openid".into(), "app!t1.Display".into(), "app!t1.Edit".into()],
        },
        access_token: access_token.into(),
        refresh_token: Some(format!("{index:030}-r")),
        expires_at: 1_900_000_000,
        refresh_at: 1_899_999_700,
        csrf_secret: None,
        backend_cookies: Vec::new(),
        login_at: 0,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = MemoryStore::new(Duration::from_secs(900), Duration::from_secs(180));
        // Warm up allocator arenas and the map's first growth steps.
        for index in 0..1_000 {
            store
                .save(&SessionId::generate(), Arc::new(session(index)))
                .await
                .expect("save");
        }
        let before = rss_bytes();
        let mut ids = Vec::with_capacity(SESSIONS);
        for index in 0..SESSIONS {
            let id = SessionId::generate();
            store.save(&id, Arc::new(session(index))).await.expect("save");
            ids.push(id);
        }
        let after = rss_bytes();
        // The ids are what a load of browsers would hold; keep them outside the measurement.
        let ids_bytes = (ids.capacity() * std::mem::size_of::<SessionId>()) as u64;
        let per_session = (after.saturating_sub(before).saturating_sub(ids_bytes)) as f64 / SESSIONS as f64;
        let token_bytes = (ACCESS_TOKEN_BYTES + REFRESH_TOKEN_BYTES) as f64;
        println!("sessions:               {SESSIONS}");
        println!("tokens per session:     {token_bytes:.0} bytes");
        println!("RSS growth per session: {per_session:.0} bytes");
        println!(
            "overhead per session:   {:.0} bytes (target <= 1024)",
            per_session - token_bytes
        );
        let mut found = 0;
        for id in ids.iter().step_by(1000) {
            if store.load(id).await.expect("load").is_some() {
                found += 1;
            }
        }
        assert_eq!(found, SESSIONS / 1000);
    });
}
