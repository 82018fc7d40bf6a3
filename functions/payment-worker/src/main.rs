//! paybridge Lambda function `payment-worker` (being built).
fn main() {}
