//! Start-up glue shared by the binary, the tests and the local setup: load the configuration from
//! an app folder and build the shared state.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::config::{self, Config, Env, SessionStoreConfig};
use crate::idp::xsuaa::IdpClient;
use crate::idp::Clock;
use crate::metrics::Metrics;
use crate::proxy::Upstream;
use crate::session::redis_store::RedisStore;
use crate::session::{MemoryStore, Session, SessionStore, StoreError};
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
    // Problems of default-env.json and default-services.json are listed with all the others.
    let mut errors = config::load_default_env(&sources.dir, &mut env)
        .err()
        .unwrap_or_default();
    let path = sources
        .xs_app
        .clone()
        .unwrap_or_else(|| sources.dir.join("xs-app.json"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => {
            errors.push("xs-app.json", format!("cannot read {}: {error}", path.display()));
            return Err(errors);
        }
    };
    match Config::load(&text, &env, &sources.dir) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.problems.extend(more.problems);
            Err(errors)
        }
    }
}

/// Why the router could not be built from a valid configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("outbound TLS: {0}")]
    Tls(#[from] crate::tls::Error),
    #[error("XSUAA client: {0}")]
    Idp(#[from] crate::idp::xsuaa::IdpError),
    #[error("session store: {0}")]
    SessionStore(#[from] crate::session::redis_store::Error),
    #[error("destination service: {0}")]
    Destination(#[from] crate::destination::DestinationError),
}

/// Choices that tests and embedders make; the binary uses the defaults.
#[derive(Clone, Copy)]
pub struct Options {
    /// Where "now" comes from for token expiry.
    pub clock: Clock,
    /// How often idle sessions are swept.
    pub sweep_interval: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            clock: Clock::System,
            sweep_interval: Duration::from_secs(10),
        }
    }
}

/// Builds the shared state for `config`. Must run inside a tokio runtime (it starts the session
/// sweeper).
///
/// # Errors
/// When trust roots or client certificates cannot be loaded.
pub fn build_state(config: Config) -> Result<Arc<AppState>, StartupError> {
    build_state_with(config, Options::default())
}

/// [`build_state`] with explicit [`Options`].
///
/// # Errors
/// When trust roots or client certificates cannot be loaded.
pub fn build_state_with(config: Config, options: Options) -> Result<Arc<AppState>, StartupError> {
    let roots = Arc::new(crate::tls::root_store(&config.server.ca_cert_paths, &[])?);
    let upstream = Upstream::new(&config, roots.clone())?;
    let metrics = Arc::new(Metrics::new(config.server.metrics, config.routes.len()));
    let destinations = crate::destination::DestinationServices::new(
        &config.services,
        roots.clone(),
        config.auth.idp_timeout,
        metrics.clone(),
    )?
    .map(|services| {
        let client_certificate = config.xsuaa.as_ref().is_some_and(|xsuaa| xsuaa.is_x509());
        Arc::new(services.with_client_certificate(client_certificate))
    });
    if let Some(destinations) = &destinations {
        crate::destination::rotation::watch(destinations, &config.services, config.auth.binding_poll_interval);
    }
    for binding in config.services.iter() {
        tracing::info!(
            service = binding.kind.tag(),
            binding = %binding.name,
            clientid = %binding.clientid,
            mtls = binding.is_x509(),
            token_url = %binding.token_url,
            "service binding loaded"
        );
    }
    let mut sweeper = None;
    let mut redis_sweeper = None;
    let auth = match &config.xsuaa {
        Some(credentials) => {
            // A rotated certificate reaches the backends of `forwardAuthCertificates` too.
            let idp = IdpClient::new(credentials, roots, config.auth.idp_timeout)?
                .with_certificate_connectors(upstream.certificate_connectors());
            let store: Arc<dyn SessionStore> = match &config.session_store {
                SessionStoreConfig::Memory => {
                    let memory = Arc::new(MemoryStore::new(config.session_timeout, config.auth.login_attempt_ttl));
                    sweeper = Some(Arc::downgrade(&memory));
                    memory
                }
                SessionStoreConfig::Redis(settings) => {
                    // The client id keeps apps that share a Redis and a secret apart.
                    let redis = RedisStore::new(
                        settings,
                        &credentials.clientid,
                        config.session_timeout,
                        config.auth.login_attempt_ttl,
                        &config.server.ca_cert_paths,
                    )?;
                    // Idle expiry calls backend logout only where backends have a logoutPath.
                    let redis = if config.backend_logout.is_empty() {
                        Arc::new(redis)
                    } else {
                        let redis = Arc::new(redis.with_expiry_tracking());
                        redis_sweeper = Some(Arc::downgrade(&redis));
                        redis
                    };
                    tracing::info!(
                        redis = %settings.display_url(),
                        from = %settings.origin,
                        cluster = settings.cluster,
                        sentinel = settings.sentinel.is_some(),
                        secrets = settings.secrets.len(),
                        "sessions are kept in Redis"
                    );
                    redis
                }
            };
            tracing::info!(
                binding = %credentials.name,
                clientid = %credentials.clientid,
                mtls = credentials.is_x509(),
                token_url = %credentials.token_url(),
                "XSUAA binding loaded"
            );
            Some(Arc::new(
                Auth::new(
                    credentials.clone(),
                    config.auth.clone(),
                    config.login_callback.clone(),
                    idp,
                    store,
                    options.clock,
                )
                .with_metrics(metrics.clone())
                .with_login_rate_limit(config.server.login_rate_limit, config.server.forwarded_hops)
                .with_tenancy(config.tenancy.clone()),
            ))
        }
        None => None,
    };
    let subscriptions = subscriptions(&config, auth.as_deref(), &metrics);
    // The configuration requires the XSUAA binding (and its apiurl) for the CSP.
    let frame_ancestors = match (&config.frame_ancestors, &auth) {
        (Some(settings), Some(auth)) => Some(crate::clickjacking::FrameAncestors::start(
            settings.clone(),
            auth.idp.clone(),
        )),
        _ => None,
    };
    let state = Arc::new(
        AppState::with_metrics(
            Snapshot {
                config: Arc::new(config),
                upstream,
            },
            auth,
            metrics,
        )
        .with_destinations(destinations)
        .with_subscriptions(subscriptions)
        .with_frame_ancestors(frame_ancestors),
    );
    if let Some(store) = sweeper {
        spawn_sweeper(
            store,
            Arc::downgrade(&state),
            options.sweep_interval,
            |store: Arc<MemoryStore>| async move { Ok(store.sweep()) },
        );
    }
    if let Some(store) = redis_sweeper {
        spawn_sweeper(
            store,
            Arc::downgrade(&state),
            options.sweep_interval,
            |store: Arc<RedisStore>| async move { store.sweep().await },
        );
    }
    if let Some(auth) = &state.auth {
        // Expiry log for x509 credentials; binding files are also watched for rotation.
        auth.start_rotation();
    }
    Ok(state)
}

/// The SaaS registry's callbacks when `saas-registry` is bound; their tokens are checked with the
/// XSUAA binding's keys, over the login's connections to it.
fn subscriptions(config: &Config, auth: Option<&Auth>, metrics: &Arc<Metrics>) -> Option<crate::saas::Subscriptions> {
    let registry = config.saas_registry.as_ref()?;
    // The configuration refuses a saas-registry binding without XSUAA and its zone; should one
    // get here even so, the callbacks stay closed (ordinary routes) rather than open.
    let Some(auth) = auth else {
        tracing::error!(binding = %registry.name, "saas-registry bound without XSUAA: callbacks are off");
        return None;
    };
    let subscriptions = crate::saas::Subscriptions::new(
        registry,
        &auth.credentials,
        &config.services,
        auth.idp.clone(),
        auth.clock,
        metrics.clone(),
    );
    match &subscriptions {
        Some(_) => tracing::info!(
            binding = %registry.name,
            dependencies = %registry.dependencies_path,
            subscriptions = %format!("{}/{{tenantId}}", registry.tenants_path),
            "SaaS registry callbacks answered"
        ),
        None => tracing::error!(
            binding = %registry.name,
            "the XSUAA binding names no identityzoneid: subscription callbacks are off"
        ),
    }
    subscriptions
}

/// Sweeps ended sessions periodically and makes their backend logout calls, as a logout does. With
/// Redis every instance sweeps and each ended session is handed to exactly one of them. Ends when
/// the store or the state is gone.
fn spawn_sweeper<S, F, Fut>(store: std::sync::Weak<S>, state: std::sync::Weak<AppState>, interval: Duration, sweep: F)
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Vec<Arc<Session>>, StoreError>> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(store) = store.upgrade() else { break };
            let ended = match sweep(store).await {
                Ok(ended) => ended,
                Err(error) => {
                    tracing::debug!(error = %error, "sweep of expired sessions skipped");
                    continue;
                }
            };
            if ended.is_empty() {
                continue;
            }
            tracing::info!(count = ended.len(), "idle sessions ended");
            let Some(state) = state.upgrade() else { break };
            let snapshot = state.snapshot();
            for session in ended {
                crate::auth::logout::spawn_backend_logout(snapshot.config.clone(), snapshot.upstream.clone(), session);
            }
        }
    });
}

/// Logs, once at start, each setting that is set but works differently here, changes nothing, or
/// is for Node.js only.
pub fn log_notes(config: &Config) {
    for note in &config.notes {
        match note.level {
            config::settings::Level::Warn => tracing::warn!(setting = %note.name, "{} {}", note.name, note.message),
            config::settings::Level::Info => tracing::info!(setting = %note.name, "{} {}", note.name, note.message),
        }
    }
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
