//! DynamoDB backend of the Store trait (single-table design).
