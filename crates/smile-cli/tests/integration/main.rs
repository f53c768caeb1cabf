//! Integration tests: the real server on an ephemeral port, real receivers on loopback.

mod api;
mod cluster;
mod contract;
mod delivery;
mod idempotency;
mod lanes;
mod listen;
mod metrics;
mod outage;
mod process;
mod sandbox;
mod security;
mod shutdown;
mod support;
