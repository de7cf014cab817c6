//! The cache protects itself: confined paths, the cache marker, a safe gc, verified reads.
