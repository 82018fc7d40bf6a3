//! Unzer Payment API connector (REST + JSON, private-key Basic auth).
