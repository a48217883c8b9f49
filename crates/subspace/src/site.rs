//! Where an intervention reads or writes: a layer, a component of that layer, and (per prompt)
//! a token position. Types instead of pyvene's / nnsight's string paths.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The vectors of one layer that can be read or edited.
///
/// ```text
///   block_input ─┬─────────────(+)─┬──────────────(+)── block_output
///                └─ norm ─ attn ─┘ └─ norm ─ mlp ─┘
///                   attention_output     mlp_output
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
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
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Component::BlockInput => "block_input",
            Component::AttentionOutput => "attention_output",
            Component::MlpOutput => "mlp_output",
            Component::BlockOutput => "block_output",
        })
    }
}

/// A layer and component. The token position is given per prompt, since base and source prompts
/// may put the same entity at different positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Site {
    pub layer: usize,
    pub component: Component,
}

impl Site {
    /// The residual stream after block `layer` (the tutorial's site).
    pub fn block_output(layer: usize) -> Self {
        Site {
            layer,
            component: Component::BlockOutput,
        }
    }

    pub fn new(layer: usize, component: Component) -> Self {
        Site { layer, component }
    }

    /// Checks the layer against the model's depth.
    pub fn check(&self, n_layers: usize) -> crate::Result<()> {
        if self.layer >= n_layers {
            return Err(crate::SubspaceError::LayerOutOfRange {
                layer: self.layer,
                n_layers,
            });
        }
        Ok(())
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {} {}", self.layer, self.component)
    }
}
