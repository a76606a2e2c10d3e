//! `xsuaa-dev --out DIR [--secret S]`: runs a development XSUAA for a local
//! setup and writes what an application router needs to use it.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use xsuaa_dev::DevXsuaa;

const USAGE: &str = "usage: xsuaa-dev --out DIR [--secret SECRET]";

struct Args {
    out: PathBuf,
    secret: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut out = None;
    let mut secret = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(args.next().ok_or("--out needs a value")?)),
            "--secret" => secret = Some(args.next().ok_or("--secret needs a value")?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    Ok(Args { out, secret })
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
    let xsuaa = builder.start().await?;
    // With a secret the demo exercises the binding-secret path; otherwise x509.
    let credentials = if args.secret.is_some() {
        xsuaa.secret_credentials()?
    } else {
        xsuaa.credentials()
    };
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("ca.pem"), xsuaa.ca_pem()).context("writing ca.pem")?;
    std::fs::write(out.join("vcap_services.json"), xsuaa.vcap_services(&credentials))
        .context("writing vcap_services.json")?;
    let binding = xsuaa
        .write_binding_dir(&out.join("bindings"), "xsuaa", &credentials)
        .context("writing the binding directory")?;

    println!("url:     {}", xsuaa.url());
    println!("certurl: {}", xsuaa.cert_url());
    println!("ca:      {}", out.join("ca.pem").display());
    println!("binding: {}", binding.display());
    println!("login user: jane.doe (password: secret)");
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")?;
    xsuaa.shutdown().await;
    Ok(())
}
