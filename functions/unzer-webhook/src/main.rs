//! paybridge Lambda function `unzer-webhook` (being built).
fn main() {}
