pub mod check;
pub mod events;
pub mod style;
