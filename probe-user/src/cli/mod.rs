//! One module per subcommand: its arguments, a call into the library, and
//! what it prints.

pub mod allocator;
pub mod check;
mod check_text;
pub mod diff;
pub mod docs;
pub mod events;
pub mod export;
pub mod guard;
pub mod live;
pub mod probe_args;
pub mod record;
pub mod replay;
pub mod report;
pub mod stdout;
pub mod style;
