//! The engine room: how the verbs at the top of the crate (predict, trace, patch, sweep, train,
//! generate) run the model. Nothing here is a verb of its own.
//!
//! - [`blocks`]: the one loop over the model's blocks that applies edits at their sites and
//!   keeps what it is asked to ([`Blocks`]);
//! - [`lanes`]: several batches of different shapes through the same blocks at once;
//! - [`forward`]: whole passes made of that loop (the next-token logits, a trace);
//! - `prefix`: prompts that begin alike run their common beginning once, and passes run
//!   several at a time (`prefix::passes_together`);
//! - [`batching`] and [`limits`]: how prompts of different lengths are grouped into passes, and
//!   how many tokens and bytes a pass may take;
//! - [`stop`]: the flag every long loop reads (Ctrl-C, a notebook's interrupt).

pub mod batching;
pub mod blocks;
pub mod forward;
pub mod lanes;
pub mod limits;
pub(crate) mod prefix;
pub mod stop;

pub use blocks::{Blocks, Cell, Edit, Keep, Ran, Taps, Trace, Window, apply_edits};
pub use forward::{last_logits, prefix_cache, trace, trace_keeping, trace_until};
pub use lanes::{Lane, lanes_through, lanes_through_last};
pub use limits::TOKENS_PER_FORWARD;
pub use stop::StopFlag;
