//! One module per subcommand, plus the options they share.

pub mod attribute;
pub mod bench;
pub mod common;
pub mod das;
pub mod generate;
pub mod patch;
pub mod ravel;
pub mod site_args;
pub mod topk;
