pub mod check;
pub mod diff;
pub mod events;
pub mod style;
