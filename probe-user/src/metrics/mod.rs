//! Prometheus metrics of a live session (`--metrics ADDR:PORT`): `state`
//! folds the records the session writes and the programs' run-time
//! statistics, `encode` writes them in the OpenMetrics text format, and
//! `server` answers `GET /metrics`.

pub mod encode;
pub mod server;
pub mod state;

pub use state::MetricsState;

/// The state a session and its server share.
pub type SharedMetrics = std::sync::Arc<std::sync::Mutex<MetricsState>>;
