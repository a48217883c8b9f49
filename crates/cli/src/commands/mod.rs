//! One module per subcommand, plus the options they share.

pub mod common;
pub mod topk;
