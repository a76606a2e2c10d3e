//! Start-up glue shared by the binary, the tests and the local setup: load the configuration from
//! an app folder and build the shared state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{self, Config, Env};
use crate::proxy::Upstream;
use crate::state::{AppState, Snapshot};

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The app folder (`localDir`, `default-env.json`).
    pub dir: PathBuf,
    /// `xs-app.json`; defaults to `<dir>/xs-app.json`.
    pub xs_app: Option<PathBuf>,
}

/// Reads `xs-app.json` and `default-env.json` and checks them with `env`.
///
/// # Errors
/// Every configuration problem, with key paths.
pub fn load_config(sources: &Sources, mut env: Env) -> Result<Config, config::Error> {
    config::load_default_env(&sources.dir, &mut env)?;
    let path = sources
        .xs_app
        .clone()
        .unwrap_or_else(|| sources.dir.join("xs-app.json"));
    let text = std::fs::read_to_string(&path).map_err(|error| {
        let mut errors = config::Error::default();
        errors.push("xs-app.json", format!("cannot read {}: {error}", path.display()));
        errors
    })?;
    Config::load(&text, &env, &sources.dir)
}

/// Why the router could not be built from a valid configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("outbound TLS: {0}")]
    Tls(#[from] crate::tls::Error),
}

/// Builds the shared state for `config`.
///
/// # Errors
/// When trust roots or client certificates cannot be loaded.
pub fn build_state(config: Config) -> Result<Arc<AppState>, StartupError> {
    let roots = Arc::new(crate::tls::root_store(&config.server.ca_cert_paths, &[])?);
    let upstream = Upstream::new(&config, roots)?;
    Ok(Arc::new(AppState::new(Snapshot {
        config: Arc::new(config),
        upstream,
    })))
}

/// The process environment as an [`Env`].
pub fn process_env() -> Env {
    Env::from_pairs(std::env::vars())
}

/// Resolves a folder relative to the current directory for messages.
pub fn display_dir(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}
