//! The terminal UI, live and replay: records (from the live session's tap
//! or a trace file) → `App::apply` (pure state) → `render::draw`.

pub mod app;
pub mod detail;
pub mod evidence;
pub mod header;
pub mod live_feed;
pub mod model;
pub mod module_entry;
pub mod palette;
pub mod render;
pub mod replay;
pub mod run;

pub use app::{Action, App, Key, Mode};
