//! The facts paybridge reasons about: what the ERP says about an order ([`order`]) and what the
//! PSP says about its payment ([`payment`]). Plain data, PSP- and ERP-neutral, filled by
//! connectors, read by the engine.

pub mod order;
pub mod payment;

pub use order::*;
pub use payment::*;
