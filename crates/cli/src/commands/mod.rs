//! One module per subcommand, plus the options they share.

pub mod common;
pub mod das;
pub mod patch;
pub mod topk;
