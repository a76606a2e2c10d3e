//! The `approuter` command: load the app folder, bind, serve until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use approuter::app::{self, Sources};

/// Exit status for an invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "approuter", version, about = "Application router for xs-app.json apps")]
struct Cli {
    /// The app folder: xs-app.json, default-env.json and localDir folders live here.
    #[arg(short = 'w', long = "dir", default_value = ".")]
    dir: PathBuf,
    /// xs-app.json to use instead of <dir>/xs-app.json.
    #[arg(long = "config")]
    config: Option<PathBuf>,
    /// Listen port; overrides PORT.
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long = "log-json", env = "LOG_JSON")]
    log_json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let mut env = app::process_env();
    if let Some(port) = cli.port {
        env.set("PORT", port.to_string());
    }
    let sources = Sources {
        dir: cli.dir.clone(),
        xs_app: cli.config.clone(),
    };
    let config = match app::load_config(&sources, env) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("approuter: {errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("approuter: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, &sources)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("approuter: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: approuter::config::Config, sources: &Sources) -> anyhow::Result<()> {
    let bind = config.server.bind;
    let state = app::build_state(config).context("initialisation failed")?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let address = listener.local_addr().context("listener address")?;
    println!(
        "approuter listening on http://{address} (app folder {})",
        app::display_dir(&sources.dir)
    );
    approuter::server::run(listener, state, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            let level = std::env::var("XS_APP_LOG_LEVEL").unwrap_or_else(|_| "info".into());
            EnvFilter::try_new(level.to_ascii_lowercase())
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
