pub mod check;
pub mod diff;
pub mod events;
mod live;
pub mod record;
pub mod report;
pub mod style;
mod summary;
mod trace_sink;
