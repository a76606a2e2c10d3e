//! Subcommands of the `approuter` binary that do not serve: `check` (a pre-flight report of what
//! the router would load) and `binding-params` (the `parameters.json` for an x509 binding).

pub mod binding_params;
pub mod check;

/// Exit status for configuration problems (EX_USAGE), as when the router refuses to start.
pub const EXIT_CONFIG: u8 = 64;
/// Exit status for other failures (an unusable certificate, an unreadable file).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of `check` for an app that would run, but behave differently than with the
/// Node.js router (the migration report says how).
pub const EXIT_DIFFERENT: u8 = 3;

/// The current Unix time in seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
