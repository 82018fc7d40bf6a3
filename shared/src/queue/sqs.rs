//! SQS backend of the Queue trait.
