pub mod check;
pub mod diff;
pub mod events;
mod live;
pub mod record;
pub mod style;
