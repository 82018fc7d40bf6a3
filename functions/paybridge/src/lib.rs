//! The `paybridge` crate as a library: everything the `paybridge` binary runs, so that the
//! scenario tests and `paybridge demo` use exactly the code `paybridge serve` uses.
//!
//! [`cli`] (arguments), [`startup`] (config, secrets, connectors, start-up checks, exit codes),
//! [`connectors`] (the connector kinds this build has), [`serve`] (the running process),
//! [`http`] (the router shared with the HTTP Lambda functions).

pub mod cli;
pub mod connectors;
pub mod http;
pub mod serve;
pub mod startup;
