//! Sweeps and random searches: variants share upstream stages through the cache.
