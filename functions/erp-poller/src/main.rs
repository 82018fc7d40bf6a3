//! paybridge Lambda function `erp-poller` (being built).
fn main() {}
