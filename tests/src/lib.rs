//! paybridge-testkit: simulators that stand in for systems we cannot reach from here — the
//! Unzer Payment API ([`unzer_sim`]) and the pixi SOAP API ([`pixi_sim`]) — following their
//! public wire formats, usable as a library (in-process, on a loopback port) and through the
//! `paybridge-sim` binary; Computop Paygate's KVP API ([`paygate_sim`], as a library only); a
//! real SMTP server for e-mail tests ([`smtp_sink`], aiosmtpd); plus the cross-crate scenario
//! tests under `tests/tests/`.

pub mod paygate_sim;
pub mod pixi_sim;
pub mod smtp_sink;
pub mod unzer_sim;
