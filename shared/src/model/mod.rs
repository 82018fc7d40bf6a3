//! The facts paybridge reasons about: what the ERP says about an order ([`erp`]) and what the
//! PSP says about its payment ([`psp`]). Plain data, filled by connectors, read by the engine.

pub mod erp;
pub mod psp;

pub use erp::*;
pub use psp::*;
