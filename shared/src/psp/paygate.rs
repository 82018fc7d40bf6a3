//! Computop Paygate (issue 13), the second PSP. So far: the envelope of its classic key-value
//! ("KVP") API, which every request, response and notify travels in — [`envelope`]. The
//! connector, the notify route and the flows build on it.

pub mod envelope;
