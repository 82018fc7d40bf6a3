//! The HTTP router lives in the library ([`paybridge_core::http`]) so the Lambda functions share
//! it; re-exported here for the binary's modules and tests.

pub use paybridge_core::http::*;
