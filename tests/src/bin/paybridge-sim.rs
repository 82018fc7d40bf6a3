//! `paybridge-sim`: the pixi SOAP simulator and the Unzer API simulator as one process, for
//! trying `paybridge serve` without any account:
//!
//! ```text
//! cargo run -p paybridge-testkit --bin paybridge-sim -- --pixi 127.0.0.1:8081 --unzer 127.0.0.1:8082
//! cargo run -p paybridge -- serve --config examples/paybridge.sim.toml
//! ```
//!
//! It prints both URLs and the credentials to configure (pixi Basic auth, one Unzer key pair per
//! payment method — the ones `examples/paybridge.sim.toml` uses), seeds a few orders on HOLD
//! with their Unzer payments (unless `--no-seed`), and then reads commands from stdin to play
//! the warehouse and the customer: ship, cancel, credit note, close, transfer received (which
//! also sends Unzer's `payment.completed` webhook to paybridge). It runs until Ctrl-C.

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use paybridge_testkit::pixi_sim::{self, NewOrder, PixiSim};
use paybridge_testkit::unzer_sim::UnzerSim;
use rust_decimal::Decimal;
use std::net::SocketAddr;
use std::str::FromStr;
use tokio::sync::mpsc;

/// pixi and Unzer simulators for trying `paybridge serve` locally.
#[derive(Debug, Parser)]
#[command(name = "paybridge-sim", version, about)]
struct Args {
    /// Address of the pixi SOAP simulator.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    pixi: SocketAddr,
    /// Address of the Unzer API simulator (paybridge's `api_host`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8082")]
    unzer: SocketAddr,
    /// paybridge's webhook URL, where `pay` sends Unzer's `payment.completed`.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080/webhooks/unzer"
    )]
    webhook: String,
    /// Start with no orders.
    #[arg(long)]
    no_seed: bool,
}

/// One payment method of the simulated shop: pixi payment code, Unzer key pair, Unzer type.
/// `examples/paybridge.sim.toml` configures exactly these (a unit test keeps them in step).
struct Method {
    code: &'static str,
    what: &'static str,
    public_key: &'static str,
    private_key: &'static str,
    unzer_type: &'static str,
}

const METHODS: &[Method] = &[
    Method {
        code: "K",
        what: "card, expert mode",
        public_key: "s-pub-sim-card-expert",
        private_key: "s-priv-sim-card-expert-not-a-real-key",
        unzer_type: "crd",
    },
    Method {
        code: "C",
        what: "card, standard mode",
        public_key: "s-pub-sim-card-standard",
        private_key: "s-priv-sim-card-standard-not-a-real-key",
        unzer_type: "crd",
    },
    Method {
        code: "V",
        what: "prepayment",
        public_key: "s-pub-sim-prepayment",
        private_key: "s-priv-sim-prepayment-not-a-real-key",
        unzer_type: "ppy",
    },
    Method {
        code: "R",
        what: "Paylater invoice",
        public_key: "s-pub-sim-paylater",
        private_key: "s-priv-sim-paylater-not-a-real-key",
        unzer_type: "piv",
    },
    Method {
        code: "S",
        what: "Sofort (charged in the shop)",
        public_key: "s-pub-sim-sofort",
        private_key: "s-priv-sim-sofort-not-a-real-key",
        unzer_type: "sft",
    },
];

/// Orders created at start: (order number, payment code, line prices).
const SEED: &[(i64, &str, &[&str])] = &[
    (20001, "K", &["60.00", "40.00"]),
    (20002, "C", &["120.00"]),
    (20003, "V", &["49.90", "10.00"]),
    (20004, "R", &["75.00", "25.00"]),
    (20005, "S", &["19.99"]),
];

const HELP: &str = "\
commands (order = pixi order number, lines = line keys from `orders`, none = all open lines):
  orders                       list orders with lines, invoices and the Unzer amounts
  show ORDER                   one order: comments, bookings, transfer fields, Unzer payment
  new CODE PRICE...            a new order on HOLD with its Unzer payment (CODE: see above)
  ship ORDER [LINE...]         ship lines and write their invoice
  cancel ORDER [LINE...]       cancel lines (STO)
  credit ORDER AMOUNT          write a credit note (\"no DTAUS\" set)
  close ORDER                  set the order CLOSED
  pay ORDER [AMOUNT]           the customer's transfer arrives (prepayment); sends payment.completed
  help                         this text
stop with Ctrl-C";

struct Sims {
    pixi: PixiSim,
    unzer: UnzerSim,
    webhook: String,
    /// Order numbers created so far, in order.
    orders: Vec<i64>,
}

fn method(code: &str) -> anyhow::Result<&'static Method> {
    METHODS
        .iter()
        .find(|m| m.code.eq_ignore_ascii_case(code))
        .ok_or_else(|| {
            let codes: Vec<&str> = METHODS.iter().map(|m| m.code).collect();
            anyhow!(
                "unknown payment code {code:?} (known: {})",
                codes.join(", ")
            )
        })
}

fn amount(text: &str) -> anyhow::Result<Decimal> {
    let d = Decimal::from_str(text).with_context(|| format!("{text:?} is not an amount"))?;
    if d <= Decimal::ZERO || d.scale() > 2 {
        bail!("{text:?}: an amount is positive with at most two decimals");
    }
    Ok(d)
}

fn two(d: Decimal) -> String {
    let mut r = d.round_dp(2);
    r.rescale(2);
    r.to_string()
}

impl Sims {
    /// Creates the order's Unzer payment and imports the order into pixi on HOLD.
    fn new_order(&mut self, nr: i64, code: &str, prices: &[&str]) -> anyhow::Result<String> {
        let m = method(code)?;
        if prices.is_empty() {
            bail!("an order needs at least one line price");
        }
        let mut total = Decimal::ZERO;
        let mut order = NewOrder::new(nr, m.code);
        for p in prices {
            let d = amount(p)?;
            total += d;
            order = order.line(1, &two(d));
        }
        let total = two(total);
        let pid = match m.unzer_type {
            "ppy" => self.unzer.prepayment(m.public_key, "EUR", &total),
            "sft" => self
                .unzer
                .charged(m.public_key, m.unzer_type, "EUR", &total),
            other => self.unzer.authorized(m.public_key, other, "EUR", &total),
        };
        self.pixi.add_order(order.pay_id(&pid));
        self.orders.push(nr);
        Ok(format!(
            "order {nr}  {:<8}  {total} EUR  Unzer payment {pid}",
            m.code
        ))
    }

    fn order(&self, nr: &str) -> anyhow::Result<pixi_sim::SimOrder> {
        let n: i64 = nr
            .parse()
            .with_context(|| format!("{nr:?} is not an order number"))?;
        self.pixi
            .order(n)
            .ok_or_else(|| anyhow!("no order {n} (see `orders`)"))
    }

    fn lines(&self, o: &pixi_sim::SimOrder, keys: &[&str]) -> anyhow::Result<Vec<i64>> {
        keys.iter()
            .map(|k| {
                let k: i64 = k
                    .parse()
                    .with_context(|| format!("{k:?} is not a line key"))?;
                if o.lines.iter().any(|l| l.key == k) {
                    Ok(k)
                } else {
                    Err(anyhow!("order {} has no line {k}", o.order_nr))
                }
            })
            .collect()
    }

    fn payment_line(&self, pid: &str) -> String {
        match self.unzer.payment_json(pid) {
            None => format!("{pid}: unknown at Unzer"),
            Some(p) => {
                let a = &p["amount"];
                let f = |k: &str| {
                    a[k].as_str()
                        .and_then(|s| Decimal::from_str(s).ok())
                        .map(two)
                        .unwrap_or_default()
                };
                format!(
                    "{pid} {}: total {} charged {} canceled {} remaining {}",
                    p["state"]["name"].as_str().unwrap_or("?"),
                    f("total"),
                    f("charged"),
                    f("canceled"),
                    f("remaining")
                )
            }
        }
    }

    fn describe(&self, o: &pixi_sim::SimOrder) -> String {
        let lines: Vec<String> = o
            .lines
            .iter()
            .map(|l| format!("{}:{}:{}", l.key, l.status, two(l.total())))
            .collect();
        let mut s = format!(
            "{} {:<8} {:<6}{} lines [{}]",
            o.order_nr,
            o.payment_type,
            o.status,
            if o.shipping_lock { " LOCKED" } else { "" },
            lines.join(" ")
        );
        if let Some(pid) = &o.ccp_pay_id {
            s.push_str(&format!("\n      Unzer {}", self.payment_line(pid)));
        }
        s
    }

    async fn command(&mut self, line: &str) -> anyhow::Result<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((cmd, rest)) = words.split_first() else {
            return Ok(String::new());
        };
        match (cmd.to_ascii_lowercase().as_str(), rest) {
            ("help", _) => Ok(HELP.to_string()),
            ("orders", _) => {
                let mut out: Vec<String> = self
                    .orders
                    .iter()
                    .filter_map(|n| self.pixi.order(*n))
                    .map(|o| self.describe(&o))
                    .collect();
                if out.is_empty() {
                    out.push("no orders yet: `new CODE PRICE...`".into());
                }
                Ok(out.join("\n"))
            }
            ("show", [nr]) => {
                let o = self.order(nr)?;
                let mut out = vec![self.describe(&o)];
                for c in self.pixi.comments(o.order_nr) {
                    out.push(format!("  comment  {c}"));
                }
                for b in self.pixi.bookings_for_order(o.order_nr) {
                    out.push(format!("  booking  {} {}", b.event_id, two(b.amount)));
                }
                if let Some(b) = self.pixi.transfer_fields(o.order_nr)
                    && b.iban.is_some()
                {
                    out.push(format!(
                        "  transfer holder {:?} IBAN {:?} BIC {:?} bank {:?}",
                        b.holder.unwrap_or_default(),
                        b.iban.unwrap_or_default(),
                        b.bic.unwrap_or_default(),
                        b.bank_name.unwrap_or_default()
                    ));
                }
                Ok(out.join("\n"))
            }
            ("new", [code, prices @ ..]) => {
                let nr = self.orders.iter().max().map_or(20001, |n| n + 1);
                self.new_order(nr, code, prices)
            }
            ("ship", [nr, keys @ ..]) => {
                let o = self.order(nr)?;
                let keys = self.lines(&o, keys)?;
                let inv = self.pixi.ship_lines(o.order_nr, &keys);
                Ok(format!("invoice {inv} written for order {}", o.order_nr))
            }
            ("cancel", [nr, keys @ ..]) => {
                let o = self.order(nr)?;
                let mut keys = self.lines(&o, keys)?;
                if keys.is_empty() {
                    keys = o
                        .lines
                        .iter()
                        .filter(|l| !matches!(l.status.as_str(), "AUS" | "STO" | "NLB"))
                        .map(|l| l.key)
                        .collect();
                }
                self.pixi.cancel_lines(o.order_nr, &keys);
                Ok(format!("lines {keys:?} of order {} cancelled", o.order_nr))
            }
            ("credit", [nr, amt]) => {
                let o = self.order(nr)?;
                let a = two(amount(amt)?);
                let cn = self.pixi.create_credit_note(o.order_nr, &a);
                Ok(format!(
                    "credit note {cn} of {a} EUR for order {}",
                    o.order_nr
                ))
            }
            ("close", [nr]) => {
                let o = self.order(nr)?;
                self.pixi.close_order(o.order_nr);
                Ok(format!("order {} closed", o.order_nr))
            }
            ("pay", [nr, amt @ ..]) => {
                let o = self.order(nr)?;
                let pid = o
                    .ccp_pay_id
                    .clone()
                    .ok_or_else(|| anyhow!("order {} has no Unzer payment", o.order_nr))?;
                let a = match amt {
                    [a] => two(amount(a)?),
                    _ => two(o.total()),
                };
                self.unzer.receive_transfer(&pid, &a);
                let status = self
                    .unzer
                    .send_webhook(&self.webhook, "payment.completed", &pid)
                    .await;
                Ok(match status {
                    Ok(s) => format!(
                        "transfer of {a} EUR received for {pid}; webhook to {} answered HTTP {s}",
                        self.webhook
                    ),
                    Err(e) => format!(
                        "transfer of {a} EUR received for {pid}; the webhook could not be sent ({e}) — is paybridge serve running?"
                    ),
                })
            }
            _ => Err(anyhow!("cannot read {line:?}; type `help`")),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let pixi = PixiSim::start_on(args.pixi)
        .await
        .with_context(|| format!("pixi simulator cannot listen on {}", args.pixi))?;
    let unzer = UnzerSim::start_on(args.unzer)
        .await
        .with_context(|| format!("Unzer simulator cannot listen on {}", args.unzer))?;
    for m in METHODS {
        unzer.add_keypair(m.public_key, m.private_key);
    }
    println!("paybridge-sim: simulators running (Ctrl-C stops them)");
    println!(
        "  pixi SOAP  {}  user {}  password {}",
        pixi.url(),
        pixi.user(),
        pixi.password()
    );
    println!("  Unzer API  {}  (the methods' api_host)", unzer.base_url());
    println!("  Unzer key pairs, one per pixi payment code (pixi shop / mandant \"SHP\"):");
    for m in METHODS {
        println!(
            "    {:<9} {:<28} public_key {:<26} private_key {}",
            m.code, m.what, m.public_key, m.private_key
        );
    }
    println!("  webhooks (`pay`) go to {}", args.webhook);
    println!("  matching paybridge config: examples/paybridge.sim.toml");
    let mut sims = Sims {
        pixi,
        unzer,
        webhook: args.webhook.clone(),
        orders: Vec::new(),
    };
    if !args.no_seed {
        println!("seeded orders (HOLD, waiting for paybridge):");
        for (nr, code, prices) in SEED {
            println!("  {}", sims.new_order(*nr, code, prices)?);
        }
    }
    println!("type `help` for commands");

    // stdin is read on a plain thread (blocking reads) and handed over line by line.
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stdin_open = true;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context("cannot listen for Ctrl-C")?;
                println!("paybridge-sim: stopped");
                return Ok(());
            }
            line = rx.recv(), if stdin_open => match line {
                // stdin closed (e.g. started in the background): keep serving until Ctrl-C.
                None => stdin_open = false,
                Some(line) => match sims.command(line.trim()).await {
                    Ok(out) if out.is_empty() => {}
                    Ok(out) => println!("{out}"),
                    Err(e) => println!("error: {e:#}"),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paybridge_core::config::{Config, ErpKind, PspKind, SecretRef};
    use std::path::Path;

    /// `examples/paybridge.sim.toml` configures exactly this binary's defaults and key pairs.
    #[test]
    fn example_config_matches_the_simulators() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/paybridge.sim.toml");
        let text = std::fs::read_to_string(&path).expect("examples/paybridge.sim.toml exists");
        let cfg = Config::parse(&text, "paybridge.sim.toml").expect("the example parses");
        let args = Args::parse_from(["paybridge-sim"]);
        let erp = cfg.erp.first().expect("one [[erp]]");
        assert_eq!(erp.kind, ErpKind::Pixi);
        assert_eq!(
            erp.url.as_deref(),
            Some(format!("http://{}/soap/pixiAPP/", args.pixi).as_str())
        );
        assert_eq!(erp.user.as_deref(), Some(pixi_sim::DEFAULT_USER));
        assert_eq!(
            erp.password
                .as_ref()
                .and_then(|p| p.resolve_local().ok())
                .map(|s| s.expose().to_string()),
            Some(pixi_sim::DEFAULT_PASSWORD.to_string())
        );
        assert_eq!(cfg.methods.len(), METHODS.len());
        for m in METHODS {
            let c = cfg
                .methods
                .iter()
                .find(|c| c.erp_method == m.code)
                .unwrap_or_else(|| panic!("no [[method]] for {}", m.code));
            assert_eq!(c.psp, PspKind::Unzer);
            assert_eq!(c.mandant, "SHP");
            assert_eq!(c.account.public_key, m.public_key);
            match &c.account.private_key {
                SecretRef::Plain(s) => assert_eq!(s.expose(), m.private_key),
                other => panic!(
                    "{}: private_key should be plain: here, got {other:?}",
                    m.code
                ),
            }
            assert_eq!(
                c.account.api_host.as_deref(),
                Some(format!("http://{}", args.unzer).as_str())
            );
        }
        assert!(
            args.webhook.ends_with("/webhooks/unzer")
                && args.webhook.contains(&cfg.server.listen.to_string()),
            "the default webhook URL is the example's listener"
        );
    }

    #[tokio::test]
    async fn commands_drive_the_simulators() {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let pixi = PixiSim::start_on(loopback).await.expect("pixi sim");
        let unzer = UnzerSim::start_on(loopback).await.expect("unzer sim");
        for m in METHODS {
            unzer.add_keypair(m.public_key, m.private_key);
        }
        let mut sims = Sims {
            pixi,
            unzer,
            webhook: "http://127.0.0.1:9/webhooks/unzer".into(),
            orders: Vec::new(),
        };
        let out = sims.command("new k 60.00 40.00").await.expect("new");
        assert!(
            out.contains("order 20001") && out.contains("100.00 EUR"),
            "{out}"
        );
        let o = sims.pixi.order(20001).expect("imported");
        assert_eq!(o.status, "HOLD");
        assert!(o.ccp_pay_id.is_some());
        let first = o.lines[0].key.to_string();
        let out = sims
            .command(&format!("ship 20001 {first}"))
            .await
            .expect("ship");
        assert!(out.contains("invoice"), "{out}");
        sims.command("cancel 20001").await.expect("cancel");
        assert_eq!(sims.pixi.order(20001).expect("order").status, "CLOSED");
        assert!(sims.command("credit 20001 10.00").await.is_ok());
        assert!(
            sims.command("orders")
                .await
                .expect("list")
                .contains("20001")
        );
        assert!(sims.command("show 20001").await.is_ok());
        assert!(sims.command("new NOPE 1.00").await.is_err());
        assert!(sims.command("ship 99999").await.is_err());
        assert!(sims.command("credit 20001 1.234").await.is_err());
        let out = sims.command("new v 10.00").await.expect("prepayment");
        assert!(out.contains("order 20002"), "{out}");
        let out = sims.command("pay 20002").await.expect("pay");
        assert!(out.contains("could not be sent"), "{out}");
    }
}
