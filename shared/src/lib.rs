//! paybridge-core: everything of paybridge that is not an entry point.
//!
//! | module | what it is for |
//! |---|---|
//! | [`money`] | `Money` = `Decimal` + currency exponent; minor units; rounding tolerance |
//! | [`model`] | facts read from the ERP (orders, invoices, credit notes) and the PSP's view of a payment |
//! | [`config`] | tenant, ERP connections, payment-method configs; TOML loading with located errors |
//! | [`engine`] | the pure decision function: facts + PSP view + ledger + config + now → planned operations |
//! | [`ledger`] | operation records, their state machine, deterministic ids and the money invariants |
//! | [`store`] | the `Store` trait (single-table item model), its typed repository, the SQLite backend |
//! | [`queue`] | the `Queue` trait (at-least-once jobs with delayed redelivery) and its SQLite backend |
//! | [`erp`], [`psp`], [`notify`] | the adapter traits the app talks to (ERP, PSP with its webhooks, operator notifications), their connectors (one folder per kind) and the PSP registry |
//! | [`http`] | the one axum router (health, `POST /webhooks/{psp}`, problems) for `serve` and the HTTP Lambda |
//! | [`app`] | the IO orchestration shared by every entry point: `poll_cycle`, `run_job`, `accept_webhook` |
//! | [`erp::memory`], [`psp::memory`], [`notify::recording`] | the in-memory ERP and PSP of `kind = "memory"` (trials, tests) and a recording notifier |
//! | [`tls`] | ring, the one rustls crypto provider of the HTTP clients (reqwest, AWS SDK, lettre) |
//! | [`wiring`] | builds the connectors of a configuration once per process, for every entry point |

pub mod app;
#[cfg(feature = "aws")]
pub mod aws;
pub mod config;
pub mod engine;
pub mod erp;
#[cfg(feature = "http")]
pub mod http;
pub mod ledger;
pub mod model;
pub mod money;
pub mod notify;
pub mod psp;
pub mod queue;
pub mod store;
#[cfg(any(feature = "aws", feature = "pixi", feature = "unzer"))]
pub mod tls;
pub mod wiring;
