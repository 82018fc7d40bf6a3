//! Command-line arguments (clap derive). Unusable arguments exit with code 2 before anything
//! else happens.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// paybridge: payment automation between ERPs and PSPs.
#[derive(Debug, Parser)]
#[command(name = "paybridge", version, about)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text (filter with RUST_LOG, default info).
    #[arg(long, global = true)]
    pub log_json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the poller, the worker and the HTTP listener in one process on SQLite.
    Serve(ServeArgs),
    /// Run scripted orders for every flow through pixi and Unzer simulators on loopback and
    /// print one line per order (expected → actual); exit 0 only if every order ends as expected.
    Demo,
    /// Send a test e-mail through the configured `[smtp]` settings.
    MailTest {
        /// The configuration file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Work with the configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create the DynamoDB table and the SQS queue (with its dead-letter queue) where missing,
    /// exactly as `serve --store dynamodb --queue sqs` does, and print the queue's URL. For
    /// local emulators (moto) and scripts; on AWS the SAM template owns both.
    AwsSetup(AwsArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,

    /// The SQLite database file; default: `server.database` of the config (relative paths there
    /// are relative to the config file's directory).
    #[arg(long, value_name = "PATH")]
    pub database: Option<PathBuf>,

    /// Skip the start-up reachability check of the configured remote systems.
    #[arg(long)]
    pub no_check: bool,

    /// Where state lives: the embedded SQLite file, or a DynamoDB table (`--table`).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,

    /// Where jobs wait: the embedded SQLite file, or an SQS queue (`--queue-url`).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub queue: QueueKind,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// Where the AWS backends live.
#[derive(Debug, Args)]
pub struct AwsArgs {
    /// DynamoDB table for `--store dynamodb` (created if missing).
    #[arg(long, value_name = "NAME", default_value = "paybridge")]
    pub table: String,

    /// SQS queue name for `--queue sqs` (created with a dead-letter queue if missing).
    #[arg(long, value_name = "NAME", default_value = "paybridge-jobs")]
    pub queue_name: String,

    /// AWS endpoint override (e.g. a local moto server); otherwise the SDK's defaults apply.
    #[arg(long, value_name = "URL")]
    pub aws_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Dynamodb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueKind {
    Sqlite,
    Sqs,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load, validate and resolve secrets; print `ok` (exit 0) or the located error (exit 2).
    Check {
        /// The configuration file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_serve_flags() {
        let cli = Cli::try_parse_from([
            "paybridge",
            "serve",
            "--config",
            "p.toml",
            "--database",
            "x.db",
            "--no-check",
            "--log-json",
        ])
        .expect("valid arguments");
        assert!(cli.log_json);
        match cli.command {
            Command::Serve(a) => {
                assert_eq!(a.config, PathBuf::from("p.toml"));
                assert_eq!(a.database, Some(PathBuf::from("x.db")));
                assert!(a.no_check);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_aws_setup() {
        let cli = Cli::try_parse_from([
            "paybridge",
            "aws-setup",
            "--aws-endpoint",
            "http://127.0.0.1:5000",
            "--table",
            "t1",
        ])
        .expect("valid arguments");
        match cli.command {
            Command::AwsSetup(a) => {
                assert_eq!(a.table, "t1");
                assert_eq!(a.queue_name, "paybridge-jobs");
                assert_eq!(a.aws_endpoint.as_deref(), Some("http://127.0.0.1:5000"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_demo() {
        let cli = Cli::try_parse_from(["paybridge", "demo"]).expect("valid arguments");
        assert!(matches!(cli.command, Command::Demo));
    }

    #[test]
    fn serve_without_config_is_a_usage_error() {
        let e = Cli::try_parse_from(["paybridge", "serve"]).expect_err("missing --config");
        assert_eq!(e.exit_code(), 2);
    }
}
