//! AWS entry-point support (being built).
