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
    /// Act on one order as an operator: take it out of automation and back, mark it solved.
    Order {
        #[command(subcommand)]
        command: OrderCommand,
    },
    /// Create the DynamoDB table and the SQS queue (with its dead-letter queue) where missing,
    /// exactly as `serve --store dynamodb --queue sqs` does, and print the queue's URL. For
    /// local emulators (moto) and scripts; on AWS the SAM template owns both.
    AwsSetup(AwsArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub backend: Backend,

    /// Skip the start-up reachability check of the configured remote systems.
    #[arg(long)]
    pub no_check: bool,
}

/// Where a process finds its configuration and its state: `serve` and `order` alike, so an
/// operator command acts on the same store the running server uses.
#[derive(Debug, Args)]
pub struct Backend {
    /// The configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,

    /// The SQLite database file; default: `server.database` of the config (relative paths there
    /// are relative to the config file's directory).
    #[arg(long, value_name = "PATH")]
    pub database: Option<PathBuf>,

    /// Where state lives: the embedded SQLite file, or a DynamoDB table (`--table`).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,

    /// Where jobs wait: the embedded SQLite file, or an SQS queue (`--queue-name`).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub queue: QueueKind,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// `paybridge order …`: one operator action on one order.
#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// Take the order out of automation (seed 004): paybridge cancels its operations that have
    /// not started, comments the switch in the ERP and plans nothing more until `hands-on`.
    HandsOff(OrderTarget),
    /// Put the order back into automation: paybridge comments it and does what the order needs.
    HandsOn(OrderTarget),
    /// Mark the order's problems solved: clears the error mark, does nothing else.
    Solved(OrderTarget),
    /// E-mail the order's payment link to the customer again (behaviour.md §3.6): the same
    /// link, so it can never make a second payment; refused when the order is paid.
    ResendLink(OrderTarget),
}

/// The order an operator command acts on.
#[derive(Debug, Args)]
pub struct OrderTarget {
    /// The ERP's order number.
    #[arg(value_name = "ORDER")]
    pub order: String,

    /// The `[[erp]]` connection id the order belongs to; may be left out when there is one.
    #[arg(long, value_name = "ID")]
    pub erp: Option<String>,

    #[command(flatten)]
    pub backend: Backend,
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
                assert_eq!(a.backend.config, PathBuf::from("p.toml"));
                assert_eq!(a.backend.database, Some(PathBuf::from("x.db")));
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
    fn parses_order_commands() {
        let cli = Cli::try_parse_from([
            "paybridge",
            "order",
            "hands-off",
            "--config",
            "p.toml",
            "--erp",
            "pixi",
            "10042",
        ])
        .expect("valid arguments");
        match cli.command {
            Command::Order {
                command: OrderCommand::HandsOff(t),
            } => {
                assert_eq!(t.order, "10042");
                assert_eq!(t.erp.as_deref(), Some("pixi"));
                assert_eq!(t.backend.config, PathBuf::from("p.toml"));
                assert_eq!(t.backend.store, StoreKind::Sqlite);
            }
            other => panic!("unexpected {other:?}"),
        }
        for action in ["hands-on", "solved"] {
            let cli = Cli::try_parse_from(["paybridge", "order", action, "--config", "p", "7"]);
            assert!(cli.is_ok(), "{action}");
        }
        let e = Cli::try_parse_from(["paybridge", "order", "hands-off", "--config", "p"])
            .expect_err("missing order number");
        assert_eq!(e.exit_code(), 2);
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
