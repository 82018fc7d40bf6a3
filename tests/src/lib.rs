//! paybridge-testkit: simulators and cross-crate scenario tests (grows with the wire connectors).
