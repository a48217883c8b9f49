//! Where an intervention reads or writes: a layer, a component of that layer, a head for the
//! components that have heads, and (per prompt) token positions. Types instead of pyvene's /
//! nnsight's string paths.

use std::fmt;

use llama::{Inner, LlamaConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SubspaceError};

/// The vectors of one layer that can be read or edited.
///
/// ```text
///   block_input ─┬──────────────────────────────────(+)─┬───────────────────────(+)── block_output
///                └ norm ┬ q_proj ─ query ─┐             │                        │
///                       ├ k_proj ─ key ───┼ attention ─ head_output ─ o_proj ─┘  │
///                       └ v_proj ─ value ─┘            attention_output          │
///                                        └ norm ─ gate, up ─ mlp_hidden ─ down ─┘
///                                                                    mlp_output
/// ```
///
/// `query`, `key`, `value` and `head_output` have heads: a [`Site`] names one with
/// [`Site::head`], or all of them side by side. Keys and values have grouped-query heads: key /
/// value head `j` is shared by query heads `j·g .. (j+1)·g`, `g = n_heads / n_kv_heads`
/// (transformers' `repeat_kv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "clap", value(rename_all = "snake_case"))]
pub enum Component {
    /// The residual stream entering the block (the previous block's output; embeddings at 0).
    BlockInput,
    /// What attention adds to the stream.
    AttentionOutput,
    /// What the MLP adds to the stream.
    MlpOutput,
    /// The residual stream leaving the block: nnsight's `model.layers[i].output[0]`,
    /// transformers' `hidden_states[i + 1]`.
    #[default]
    BlockOutput,
    /// Queries as `q_proj` writes them (before rotary), per query head. Within a head the
    /// features follow the weights' rotary layout: a llama GGUF file stores each head's rotary
    /// pairs interleaved (`2i, 2i + 1`) where transformers has halves (`i, i + d/2`), so a
    /// feature-by-feature comparison with transformers permutes them; a whole head is the same.
    Query,
    /// Keys as `k_proj` writes them (before rotary), per key/value head (features ordered as
    /// [`Component::Query`]'s).
    Key,
    /// Values as `v_proj` writes them, per key/value head.
    Value,
    /// A head's attention-weighted values: `o_proj`'s input, per query head. All heads
    /// together, through `o_proj`, are the attention output.
    HeadOutput,
    /// The MLP's hidden activation `silu(gate(x)) · up(x)` (`down_proj`'s input): one value
    /// per MLP neuron.
    MlpHidden,
}

impl Component {
    /// Every component, in the order of a block's computation.
    pub const ALL: [Component; 9] = [
        Component::BlockInput,
        Component::Query,
        Component::Key,
        Component::Value,
        Component::HeadOutput,
        Component::AttentionOutput,
        Component::MlpHidden,
        Component::MlpOutput,
        Component::BlockOutput,
    ];

    /// The four residual-width vectors (today's sites, and what a [`crate::engine::Trace`] keeps
    /// by default).
    pub const RESIDUAL: [Component; 4] = [
        Component::BlockInput,
        Component::AttentionOutput,
        Component::MlpOutput,
        Component::BlockOutput,
    ];

    /// Whether a [`Site`] on this component may name a head.
    pub fn has_heads(self) -> bool {
        matches!(
            self,
            Component::Query | Component::Key | Component::Value | Component::HeadOutput
        )
    }

    /// The vector inside the block that the model's [`llama::Hook`] sees for this component
    /// (`None` for the four on the residual stream, which the block loop handles itself).
    pub fn inner(self) -> Option<Inner> {
        match self {
            Component::Query => Some(Inner::Query),
            Component::Key => Some(Inner::Key),
            Component::Value => Some(Inner::Value),
            Component::HeadOutput => Some(Inner::HeadOutputs),
            Component::MlpHidden => Some(Inner::MlpHidden),
            _ => None,
        }
    }

    /// The component of an inner vector.
    pub fn of_inner(inner: Inner) -> Component {
        match inner {
            Inner::Query => Component::Query,
            Inner::Key => Component::Key,
            Inner::Value => Component::Value,
            Inner::HeadOutputs => Component::HeadOutput,
            Inner::MlpHidden => Component::MlpHidden,
        }
    }

    /// How many heads the component has in a model of this shape (1 for a headless one).
    pub fn n_heads(self, config: &LlamaConfig) -> usize {
        match self {
            Component::Query | Component::HeadOutput => config.num_attention_heads,
            Component::Key | Component::Value => config.n_kv_heads(),
            _ => 1,
        }
    }

    /// Width of the whole vector (all heads side by side).
    pub fn width(self, config: &LlamaConfig) -> usize {
        match self {
            Component::Query | Component::HeadOutput => {
                config.num_attention_heads * config.head_dim()
            }
            Component::Key | Component::Value => config.n_kv_heads() * config.head_dim(),
            Component::MlpHidden => config.intermediate_size,
            _ => config.hidden_size,
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Component::BlockInput => "block_input",
            Component::AttentionOutput => "attention_output",
            Component::MlpOutput => "mlp_output",
            Component::BlockOutput => "block_output",
            Component::Query => "query",
            Component::Key => "key",
            Component::Value => "value",
            Component::HeadOutput => "head_output",
            Component::MlpHidden => "mlp_hidden",
        })
    }
}

/// A layer, a component and (for components with heads) one head or all of them. The token
/// positions are given per prompt, since base and source prompts may put the same entity at
/// different positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Site {
    pub layer: usize,
    pub component: Component,
    /// One head of a component with heads (`None`: all heads side by side, or a headless
    /// component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<usize>,
}

impl Site {
    /// The residual stream after block `layer` (the tutorial's site).
    pub fn block_output(layer: usize) -> Self {
        Site::new(layer, Component::BlockOutput)
    }

    /// A whole component of a layer (all its heads, if it has any).
    pub fn new(layer: usize, component: Component) -> Self {
        Site {
            layer,
            component,
            head: None,
        }
    }

    /// Head `head` of a component of a layer: `Site::head(3, Component::HeadOutput, 5)`.
    pub fn head(layer: usize, component: Component, head: usize) -> Self {
        Site {
            layer,
            component,
            head: Some(head),
        }
    }

    /// Checks the site against a model's shape and returns the width of its vector (the
    /// number of values an intervention there sees).
    pub fn check(&self, config: &LlamaConfig) -> Result<usize> {
        let n_layers = config.num_hidden_layers;
        if self.layer >= n_layers {
            return Err(SubspaceError::LayerOutOfRange {
                layer: self.layer,
                n_layers,
            });
        }
        match self.head {
            None => Ok(self.component.width(config)),
            Some(_) if !self.component.has_heads() => Err(SubspaceError::NoHeads {
                component: self.component.to_string(),
            }),
            Some(head) => {
                let n_heads = self.component.n_heads(config);
                if head >= n_heads {
                    let shared = matches!(self.component, Component::Key | Component::Value)
                        .then(|| config.num_attention_heads / n_heads.max(1));
                    return Err(SubspaceError::HeadOutOfRange {
                        component: self.component.to_string(),
                        head,
                        n_heads,
                        shared,
                    });
                }
                Ok(config.head_dim())
            }
        }
    }

    /// The features of the component's whole vector that this site covers: one head's slice,
    /// or all of them (`None`).
    pub(crate) fn features(&self, config: &LlamaConfig) -> Option<std::ops::Range<usize>> {
        self.head.map(|h| {
            let hd = config.head_dim();
            h * hd..(h + 1) * hd
        })
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {} {}", self.layer, self.component)?;
        if let Some(h) = self.head {
            write!(f, " head {h}")?;
        }
        Ok(())
    }
}
