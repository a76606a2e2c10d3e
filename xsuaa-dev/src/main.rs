//! `xsuaa-dev --out DIR [--secret S] [--destinations FILE] [--virtual-host
//! VHOST=ADDR]... [--tenant SUB[=ZONEID]]...`: runs a development XSUAA,
//! Destination service and connectivity proxy for a local setup and writes
//! what an application router needs to use them.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use xsuaa_dev::{DevXsuaa, ServiceKind};

const USAGE: &str = "usage: xsuaa-dev --out DIR [--secret SECRET] [--destinations FILE] \
                     [--virtual-host HOST:PORT=ADDR]... [--tenant SUBDOMAIN[=ZONEID]]...";

struct Args {
    out: PathBuf,
    secret: Option<String>,
    destinations: Option<PathBuf>,
    /// Virtual `host:port` and the system address it maps to.
    virtual_hosts: Vec<(String, String)>,
    /// Subscriber zones (subdomain, zone id); any switches to multi-zone mode.
    tenants: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut out = None;
    let mut secret = None;
    let mut destinations = None;
    let mut virtual_hosts = Vec::new();
    let mut tenants = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(args.next().ok_or("--out needs a value")?)),
            "--secret" => secret = Some(args.next().ok_or("--secret needs a value")?),
            "--destinations" => {
                destinations = Some(PathBuf::from(args.next().ok_or("--destinations needs a value")?));
            }
            "--virtual-host" => {
                let value = args.next().ok_or("--virtual-host needs a value")?;
                let (virtual_host, system) = value
                    .split_once('=')
                    .filter(|(v, s)| !v.is_empty() && !s.is_empty())
                    .ok_or_else(|| format!("--virtual-host {value:?} is not HOST:PORT=ADDR"))?;
                virtual_hosts.push((virtual_host.to_string(), system.to_string()));
            }
            "--tenant" => {
                let value = args.next().ok_or("--tenant needs a value")?;
                let (subdomain, zone_id) = match value.split_once('=') {
                    Some((subdomain, zone_id)) => (subdomain.to_string(), zone_id.to_string()),
                    None => (value.clone(), format!("{value}-zone")),
                };
                if subdomain.is_empty() || zone_id.is_empty() {
                    return Err(format!("--tenant {value:?} is not SUBDOMAIN[=ZONEID]"));
                }
                tenants.push((subdomain, zone_id));
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    Ok(Args {
        out,
        secret,
        destinations,
        virtual_hosts,
        tenants,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            // EX_USAGE, as for invalid configuration elsewhere in the project.
            return ExitCode::from(64);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xsuaa-dev: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut builder = DevXsuaa::builder();
    if let Some(secret) = &args.secret {
        builder = builder.client_secret(secret);
    }
    if let Some(path) = &args.destinations {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        builder = builder
            .destinations_json(&text)
            .with_context(|| format!("parsing {}", path.display()))?;
    }
    for (virtual_host, system) in &args.virtual_hosts {
        builder = builder.virtual_host(virtual_host, system);
    }
    for (subdomain, zone_id) in &args.tenants {
        builder = builder.tenant(subdomain, zone_id);
    }
    let xsuaa = builder.start().await?;
    // With a secret the demo exercises the binding-secret path; otherwise x509.
    let (credentials, destination, connectivity) = if args.secret.is_some() {
        (
            xsuaa.secret_credentials()?,
            xsuaa.service_secret_credentials(ServiceKind::Destination)?,
            xsuaa.service_secret_credentials(ServiceKind::Connectivity)?,
        )
    } else {
        (
            xsuaa.credentials(),
            xsuaa.service_credentials(ServiceKind::Destination)?,
            xsuaa.service_credentials(ServiceKind::Connectivity)?,
        )
    };
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("ca.pem"), xsuaa.ca_pem()).context("writing ca.pem")?;
    let vcap = xsuaa.vcap_services_all(&credentials, &destination, &connectivity);
    std::fs::write(out.join("vcap_services.json"), vcap).context("writing vcap_services.json")?;
    let bindings = out.join("bindings");
    let binding = xsuaa
        .write_binding_dir(&bindings, "xsuaa", &credentials)
        .context("writing the binding directory")?;
    for (kind, service) in [
        (ServiceKind::Destination, &destination),
        (ServiceKind::Connectivity, &connectivity),
    ] {
        xsuaa
            .write_service_binding_dir(&bindings, kind, service)
            .with_context(|| format!("writing the {} binding directory", kind.label()))?;
    }

    println!("url:     {}", xsuaa.url());
    println!("certurl: {}", xsuaa.cert_url());
    println!("destination service: {}", xsuaa.destination_url());
    println!("connectivity proxy: http://{}", xsuaa.connectivity_proxy_addr());
    println!("ca:      {}", out.join("ca.pem").display());
    println!("bindings: {} (and destination, connectivity)", binding.display());
    println!("login user: jane.doe (password: secret)");
    for (subdomain, zone_id) in &args.tenants {
        println!(
            "tenant {subdomain}: {} (certurl {}, zone id {zone_id}, login user user@{subdomain})",
            xsuaa.tenant_url(subdomain),
            xsuaa.tenant_cert_url(subdomain),
        );
    }
    if xsuaa.is_multi_zone() {
        println!("zone hosts are names under localhost: they resolve to 127.0.0.1 without DNS");
    }
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")?;
    xsuaa.shutdown().await;
    Ok(())
}
