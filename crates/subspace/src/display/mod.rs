//! How results look: plain text everywhere, HTML tables and SVG plots in a Jupyter notebook
//! (evcxr's display protocol: a value with an `evcxr_display` method is shown richly).

mod patched;
pub mod plot;
mod table;
mod training;

pub use patched::Patched;
pub use plot::Svg;
pub use table::{Comparison, html_escape};
