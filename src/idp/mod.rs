//! The identity-provider client: token requests to XSUAA ([`xsuaa`]), token validation
//! ([`jwt`]), the rotation of the client's certificate ([`rotation`]), which the token client
//! owns, and tokens for service bindings ([`service_token`]).

pub mod jwt;
pub mod rotation;
pub mod service_token;
pub mod single_flight;
pub mod xsuaa;

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Where "now" comes from: the system clock, or tokio's clock (so paused-time tests can move it).
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    System,
    Tokio { start_unix: u64, origin: Instant },
}

impl Clock {
    /// A clock that follows tokio's time, starting at the current Unix time.
    pub fn tokio() -> Clock {
        Clock::Tokio {
            start_unix: system_now(),
            origin: Instant::now(),
        }
    }

    /// Unix milliseconds.
    pub fn now_millis(&self) -> u64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            Clock::Tokio { start_unix, origin } => {
                start_unix * 1000 + u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
            }
        }
    }

    /// Unix seconds.
    pub fn now(&self) -> u64 {
        match self {
            Clock::System => system_now(),
            Clock::Tokio { start_unix, origin } => start_unix + origin.elapsed().as_secs(),
        }
    }
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
