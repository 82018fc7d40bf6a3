//! Unzer Payment API simulator.
