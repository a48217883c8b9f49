//! The options that say where `patch`, `das` and `generate` intervene: the layer's component
//! and head (`--component`, `--head`) and the tokens (`--positions`, `--source-positions`).

use anyhow::{Result, bail};
use clap::Args;
use subspace::{Aligned, Component, LanguageModel, Pair, Site};

/// Which vector of the layer.
#[derive(Args, Debug, Clone)]
pub struct SiteArgs {
    /// The vector of the layer to intervene on: block_output (the residual stream after the
    /// block), block_input, attention_output, mlp_output, query, key, value (as the
    /// projections write them), head_output (o_proj's input) or mlp_hidden (down_proj's input).
    #[arg(long, value_enum, default_value_t = Component::BlockOutput)]
    pub component: Component,
    /// One head of query, key, value or head_output, 0-based (default: all heads). Keys and
    /// values have the model's key/value heads (fewer, each shared by several query heads).
    #[arg(long)]
    pub head: Option<usize>,
}

impl SiteArgs {
    /// The site at `layer`, checked against the model (a head out of range is an error here,
    /// before any work).
    pub fn site(&self, lm: &LanguageModel, layer: usize) -> Result<Site> {
        let site = Site {
            layer,
            component: self.component,
            head: self.head,
        };
        lm.site_width(site)?;
        Ok(site)
    }

    /// Whether the user chose anything but the default site (for commands that also load a
    /// saved one).
    pub fn given(&self) -> bool {
        self.component != Component::BlockOutput || self.head.is_some()
    }
}

/// Which tokens: one, or several (a span), in the base prompt and the source.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// Token positions in the base prompt, 0-based: one, or several for a span (e.g. 3,4).
    #[arg(long = "positions", visible_alias = "position", value_delimiter = ',', num_args = 1..)]
    pub positions: Vec<usize>,
    /// The source prompt's position read for each base position (default: the same ones).
    #[arg(long = "source-positions", visible_alias = "source-position", value_delimiter = ',', num_args = 1..)]
    pub source_positions: Option<Vec<usize>>,
}

impl TokenArgs {
    /// The pair of `base` and `source` at these tokens.
    pub fn pair(&self, lm: &LanguageModel, base: &str, source: &str) -> Result<Pair> {
        let prompts = lm.pair(base, source)?;
        Ok(Pair::aligned(
            prompts.base,
            prompts.source,
            self.aligned()?,
        )?)
    }

    /// Base and source positions side by side.
    pub fn aligned(&self) -> Result<Vec<Aligned>> {
        if self.positions.is_empty() {
            bail!("--positions is required: the base prompt's token(s) to intervene on, 0-based");
        }
        let source = self.source_positions.as_ref().unwrap_or(&self.positions);
        if source.len() != self.positions.len() {
            bail!(
                "--source-positions gives {} positions for {} base positions: give one source position per base position",
                source.len(),
                self.positions.len()
            );
        }
        Ok(self
            .positions
            .iter()
            .zip(source)
            .map(|(&base, &source)| Aligned { base, source })
            .collect())
    }
}
