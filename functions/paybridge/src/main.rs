//! `paybridge`: the local binary. It hosts everything the AWS functions do in one process on an
//! embedded SQLite store, for trials, small installations and development:
//!
//! | command | what it does |
//! |---|---|
//! | `paybridge serve --config F` | poller + worker + HTTP listener (health, Unzer webhooks, problems) |
//! | `paybridge config check --config F` | loads, validates and resolves the configuration; prints `ok` |
//! | `paybridge mail-test --config F` | sends a test e-mail through the `[smtp]` settings |
//! | `paybridge order hands-off\|hands-on\|solved --config F ORDER` | an operator's action on one order |
//! | `paybridge demo` | scripted orders for every flow against pixi and Unzer simulators on loopback |
//!
//! Modules: [`cli`] (arguments), [`order`] (operator commands), [`startup`] (config, secrets, connectors, start-up checks, exit
//! codes), [`connectors`] (the connector kinds this build has), [`serve`] (the running process),
//! [`http`] (the router). This file only parses arguments, sets up logging and maps errors to exit
//! codes; `anyhow` is used here and nowhere else.
//!
//! Exit codes: 0 ok, 1 runtime failure (store cannot be opened, address in use, …), 2 unusable
//! configuration or arguments, 3 a configured remote system is unreachable at start.

use paybridge::{cli, demo, order, serve, startup};

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Usage errors exit with 2 (clap's convention), help and version with 0.
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // The demo's output is its table; its logs are quiet unless RUST_LOG asks for more.
    let default_filter = match cli.command {
        cli::Command::Demo => "error",
        _ => "info",
    };
    init_logging(cli.log_json, default_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit code for a failure: the typed errors know theirs, anything else is 1.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(s) = e.downcast_ref::<startup::StartError>() {
        s.exit_code()
    } else if let Some(s) = e.downcast_ref::<serve::ServeError>() {
        s.exit_code()
    } else if let Some(o) = e.downcast_ref::<order::OrderError>() {
        o.exit_code()
    } else {
        1
    }
}

async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Serve(args) => Ok(serve::serve(args).await?),
        cli::Command::Demo => {
            let summary = demo::run_demo(&mut std::io::stdout()).await?;
            if !summary.all_ok() {
                anyhow::bail!(
                    "{} of {} orders did not end as expected",
                    summary.orders - summary.ok,
                    summary.orders
                );
            }
            Ok(())
        }
        cli::Command::MailTest { config } => {
            let prepared = startup::prepare(&config)?;
            let Some(smtp) = &prepared.config.smtp else {
                anyhow::bail!("{}: no [smtp] section: nothing to test", config.display());
            };
            let mailer = paybridge_core::notify::email::EmailNotifier::new(
                smtp,
                prepared.config.tenant.id.clone(),
            )?;
            mailer.send_test().await?;
            println!("test mail sent to {}", smtp.to);
            Ok(())
        }
        cli::Command::Order { command } => {
            println!("{}", order::run(command).await?);
            Ok(())
        }
        cli::Command::AwsSetup(args) => {
            println!("{}", serve::aws_setup(&args).await?);
            Ok(())
        }
        cli::Command::Config {
            command: cli::ConfigCommand::Check { config },
        } => {
            startup::prepare(&config)?;
            println!("ok");
            Ok(())
        }
    }
}

/// Logs go to stderr (stdout stays for command results such as `ok`). The filter comes from
/// `RUST_LOG`, default `default_filter` (`info`; `error` for the demo).
fn init_logging(json: bool, default_filter: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.is_empty() => EnvFilter::try_new(&s).unwrap_or_else(|e| {
            eprintln!(
                "warning: RUST_LOG={s:?} is not a valid filter ({e}); using {default_filter:?}"
            );
            EnvFilter::new(default_filter)
        }),
        _ => EnvFilter::new(default_filter),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
