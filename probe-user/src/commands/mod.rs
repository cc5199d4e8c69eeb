pub mod check;
pub mod diff;
pub mod events;
mod live;
mod summary;
mod trace_sink;
pub mod record;
pub mod report;
pub mod style;
