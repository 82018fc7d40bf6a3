//! The `paybridge` crate as a library: everything the `paybridge` binary runs, so that the
//! scenario tests and `paybridge demo` use exactly the code `paybridge serve` uses.
//!
//! [`cli`] (arguments), [`startup`] (config, secrets, connectors, start-up checks, exit codes),
//! [`connectors`] (the connector kinds this build has), [`serve`] (the running process),
//! [`http`] (the router shared with the HTTP Lambda functions), [`listener`] (the bounded HTTP
//! accept loop `serve` runs the router under), [`order`] (an operator's action on one order), [`demo`] (`paybridge demo`: the
//! whole product against the pixi and Unzer simulators, and the scenario harness of the
//! end-to-end tests and the lifecycle bench).

pub mod cli;
pub mod connectors;
pub mod demo;
pub mod http;
pub mod listener;
pub mod order;
pub mod serve;
pub mod startup;
