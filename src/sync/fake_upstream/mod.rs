//! A loopback server that speaks the providers' APIs from bars held in memory, with fault
//! injection and a request log: for tests, benchmarks and trying a config offline.
