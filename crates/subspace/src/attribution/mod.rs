//! Attribution patching: a linear estimate of every site's patching effect from one forward pass
//! of each prompt and one backward pass of the base (Nanda 2023; Syed et al. 2023). Patching
//! site `s` at base position `p` with the source's vector changes the metric `m` by about
//! `(a_source − a_base) · ∂m/∂a_base`, for all layers, positions, heads and neurons at once.
//!
//! The gradients come from zero tensors added at every site of the asked components
//! ([`crate::engine::Taps`]): the metric's gradient with respect to a tap is its gradient with
//! respect to that activation. Base and source positions are aligned by their last tokens, as
//! [`crate::sweep::residual_sweep`] aligns them; base positions with no source token have no
//! estimate (`NaN`).

mod metric;

pub use metric::{Metric, MetricFn};

use std::collections::HashMap;

use burn::tensor::{Tensor, TensorData};

use crate::engine::{self, Blocks, Keep, Taps};
use crate::error::{Result, SubspaceError};
use crate::lm::{LanguageModel, Prompt};
use crate::readout::to_host;
use crate::site::{Component, Site};

/// Every estimate of one base/source pair and metric ([`LanguageModel::attribute`]).
#[derive(Debug, Clone)]
pub struct Attribution {
    /// The metric on the base run and on the source run (means over the pairs of
    /// [`LanguageModel::attribute_mean`]).
    pub metric_base: f32,
    pub metric_source: f32,
    /// Tokens of the base prompt (the positions of every estimate).
    pub tokens: Vec<String>,
    pub n_layers: usize,
    head_dim: usize,
    /// Per component: `∂m/∂a` of the base run, `[layer][position][feature]` flattened.
    gradients: HashMap<Component, Vec<f32>>,
    /// Per component: `(a_source − a_base) ⊙ ∂m/∂a`, the same layout (`NaN` where no source
    /// token is aligned).
    products: HashMap<Component, Vec<f32>>,
    widths: HashMap<Component, usize>,
}

impl Attribution {
    fn cell(&self, component: Component, layer: usize, position: usize) -> Result<&[f32]> {
        let (Some(products), Some(&width)) =
            (self.products.get(&component), self.widths.get(&component))
        else {
            return Err(SubspaceError::Data(format!(
                "{component} was not attributed (components: {})",
                self.components_named()
            )));
        };
        let seq = self.tokens.len();
        if layer >= self.n_layers || position >= seq {
            return Err(SubspaceError::Data(format!(
                "layer {layer}, position {position} is outside {} layers × {seq} tokens",
                self.n_layers
            )));
        }
        let at = (layer * seq + position) * width;
        Ok(&products[at..at + width])
    }

    fn components_named(&self) -> String {
        let mut names: Vec<String> = self.widths.keys().map(|c| c.to_string()).collect();
        names.sort();
        names.join(", ")
    }

    /// The estimated effect on the metric of patching `site` (a whole component, or one head
    /// of it) at base position `position`.
    pub fn estimate(&self, site: Site, position: usize) -> Result<f32> {
        let cell = self.cell(site.component, site.layer, position)?;
        let part = match site.head {
            Some(h) => cell
                .get(h * self.head_dim..(h + 1) * self.head_dim)
                .ok_or_else(|| SubspaceError::Data(format!("{site}: no such head")))?,
            None => cell,
        };
        Ok(part.iter().sum())
    }

    /// Estimates for the whole `component`, `[layer][position]`.
    pub fn grid(&self, component: Component) -> Result<Vec<Vec<f32>>> {
        (0..self.n_layers)
            .map(|l| {
                (0..self.tokens.len())
                    .map(|p| self.estimate(Site::new(l, component), p))
                    .collect()
            })
            .collect()
    }

    /// Estimates for each head of `component` at base `position`, `[layer][head]`.
    pub fn head_grid(&self, component: Component, position: usize) -> Result<Vec<Vec<f32>>> {
        let width = *self.widths.get(&component).unwrap_or(&0);
        let heads = width / self.head_dim.max(1);
        (0..self.n_layers)
            .map(|l| {
                (0..heads)
                    .map(|h| self.estimate(Site::head(l, component, h), position))
                    .collect()
            })
            .collect()
    }

    /// Per-feature estimates (one per neuron for `mlp_hidden`) at one layer and position.
    pub fn features(
        &self,
        component: Component,
        layer: usize,
        position: usize,
    ) -> Result<Vec<f32>> {
        Ok(self.cell(component, layer, position)?.to_vec())
    }

    /// `∂m/∂a` of the base run at `site` (one head's features for a head site) and `position`.
    pub fn gradient(&self, site: Site, position: usize) -> Result<Vec<f32>> {
        let width = *self
            .widths
            .get(&site.component)
            .ok_or_else(|| SubspaceError::Data(format!("{} was not attributed", site.component)))?;
        self.cell(site.component, site.layer, position)?;
        let seq = self.tokens.len();
        let at = (site.layer * seq + position) * width;
        let whole = &self.gradients[&site.component][at..at + width];
        Ok(match site.head {
            Some(h) => whole[h * self.head_dim..(h + 1) * self.head_dim].to_vec(),
            None => whole.to_vec(),
        })
    }
}

/// One base/source pair to attribute, and the metric read at the base's last token.
#[derive(Debug, Clone, Copy)]
pub struct AttributionPair<'a> {
    pub base: &'a Prompt,
    pub source: &'a Prompt,
    pub metric: &'a Metric,
}

impl LanguageModel {
    /// Attribution patching of `components` (every layer, every base position, every head)
    /// for patching `base` with `source` and the `metric` read at the base's last token: one
    /// traced forward of the source, one forward and one backward of the base.
    pub fn attribute(
        &self,
        base: &Prompt,
        source: &Prompt,
        metric: &Metric,
        components: &[Component],
    ) -> Result<Attribution> {
        self.attribute_mean(
            &[AttributionPair {
                base,
                source,
                metric,
            }],
            components,
        )
    }

    /// [`LanguageModel::attribute`] of many pairs in one batch (the sources traced together,
    /// the bases run forward and backward together), each estimate the mean over the pairs
    /// that have a token there. Positions count from each prompt's last token (prompts are
    /// left-padded): position `p` of the result is `len − p` tokens before the end of the
    /// longest base prompt, whose tokens label the result.
    pub fn attribute_mean(
        &self,
        pairs: &[AttributionPair],
        components: &[Component],
    ) -> Result<Attribution> {
        if pairs.is_empty() || components.is_empty() {
            return Err(SubspaceError::Data(
                "attribution needs at least one pair and one component".into(),
            ));
        }
        for p in pairs {
            self.check_prompt(p.base)?;
            self.check_prompt(p.source)?;
        }
        let mut comps: Vec<Component> = components.to_vec();
        comps.sort_by_key(|c| Component::ALL.iter().position(|x| x == c));
        comps.dedup();
        let bases: Vec<&Prompt> = pairs.iter().map(|p| p.base).collect();
        let sources: Vec<&Prompt> = pairs.iter().map(|p| p.source).collect();
        let longest = |ps: &[&Prompt]| ps.iter().map(|p| p.len()).max().unwrap_or(0);
        self.check_memory(pairs.len(), longest(&bases).max(longest(&sources)), true)?;
        let model = &self.model;
        let (n, rows) = (model.n_layers(), pairs.len());
        let stop = Some(self.stop_flag());
        // Each pair's metric of its row of next-token logits `[rows, vocab]`, as `[rows]`.
        let per_row = |logits: Tensor<2>| -> Tensor<1> {
            let [_, vocab] = logits.dims();
            let each = pairs.iter().enumerate().map(|(r, p)| {
                p.metric
                    .of(logits.clone().narrow(0, r, 1).reshape([1, vocab]))
            });
            Tensor::cat(each.collect(), 0)
        };

        let src_batch = self.batch(&sources);
        let src = engine::trace_keeping(model, &src_batch, &comps, stop)?;
        let src_logits = src
            .logits
            .clone()
            .ok_or_else(|| SubspaceError::Backend("the source trace has no logits".into()))?;
        let [_, ns, vocab] = src_logits.dims();
        let metric_source = to_host(per_row(
            src_logits.narrow(1, ns - 1, 1).reshape([rows, vocab]),
        ))?;

        let batch = self.batch(&bases);
        let nb = batch.seq_len;
        let device = self.device();
        let mut widths = HashMap::new();
        let mut taps: Taps = HashMap::new();
        for &c in &comps {
            let width = self.site_width(Site::new(0, c))?;
            widths.insert(c, width);
            for l in 0..n {
                let zeros = Tensor::<3>::from_data(
                    TensorData::new(vec![0f32; rows * nb * width], [rows, nb, width]),
                    &device,
                );
                taps.insert((l, c), zeros.autodiff().require_grad());
            }
        }
        let ctx = model.context(&batch);
        let ran = Blocks::new(0..n)
            .keeping(Keep {
                components: &comps,
                ..Keep::default()
            })
            .tapped(&taps)
            .stopped_by(stop)
            .run(model, &ctx, model.embed(batch.ids.clone()))?;
        let logits = model.logits_at(ran.h, nb - 1);
        let values = per_row(logits);
        let metric_base = to_host(values.clone().without_autodiff())?;
        if let Some(bad) = metric_base.iter().position(|m| !m.is_finite()) {
            return Err(SubspaceError::Data(format!(
                "the metric is {} on base prompt {bad}; choose answers the model gives a probability above 0",
                metric_base[bad]
            )));
        }
        // The rows do not interact: the sum's gradient in row r is row r's metric's.
        let grads = kernels::pool::on_pool(|| values.sum().backward());

        // Base column c reads source column c + ns − nb (the last tokens aligned); a row has a
        // value there when neither column is its padding.
        let from = nb.saturating_sub(ns);
        let aligned = nb - from;
        let src_from = from + ns - nb;
        let valid = |r: usize, c: usize| {
            c >= batch.padding[r] && c + ns >= nb && c + ns - nb >= src_batch.padding[r]
        };
        let mut gradients = HashMap::new();
        let mut products = HashMap::new();
        for &c in &comps {
            let width = widths[&c];
            let mut g_mean = vec![0f32; n * nb * width];
            let mut p_mean = vec![f32::NAN; n * nb * width];
            for l in 0..n {
                let tap = &taps[&(l, c)];
                let g = tap
                    .grad(&grads)
                    .map(|g| g.without_autodiff())
                    .unwrap_or_else(|| tap.clone().without_autodiff().zeros_like());
                let a_base = ran.components[l][&c].clone().without_autodiff();
                let a_src = src.layers[l][&c].clone();
                let diff = a_src.narrow(1, src_from, aligned) - a_base.narrow(1, from, aligned);
                let prod = to_host(diff * g.clone().narrow(1, from, aligned))?;
                let g = to_host(g)?;
                for col in 0..nb {
                    let out = (l * nb + col) * width;
                    let live: Vec<usize> = (0..rows).filter(|&r| col >= batch.padding[r]).collect();
                    for &r in &live {
                        let at = (r * nb + col) * width;
                        for f in 0..width {
                            g_mean[out + f] += g[at + f] / live.len() as f32;
                        }
                    }
                    let with_source: Vec<usize> = (0..rows).filter(|&r| valid(r, col)).collect();
                    if col < from || with_source.is_empty() {
                        continue;
                    }
                    for f in 0..width {
                        let sum: f32 = with_source
                            .iter()
                            .map(|&r| prod[(r * aligned + col - from) * width + f])
                            .sum();
                        p_mean[out + f] = sum / with_source.len() as f32;
                    }
                }
            }
            gradients.insert(c, g_mean);
            products.insert(c, p_mean);
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        let labels = bases
            .iter()
            .find(|b| b.len() == nb)
            .map_or_else(Vec::new, |b| b.tokens.clone());
        Ok(Attribution {
            metric_base: mean(&metric_base),
            metric_source: mean(&metric_source),
            tokens: labels,
            n_layers: n,
            head_dim: model.config.head_dim(),
            gradients,
            products,
            widths,
        })
    }
}

/// Pearson's correlation of `x` and `y` over the pairs where both are finite (`NaN` with fewer
/// than two or no spread): how well estimates follow real patching effects.
pub fn pearson(x: &[f32], y: &[f32]) -> f32 {
    let pairs: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(&a, &b)| (f64::from(a), f64::from(b)))
        .collect();
    let n = pairs.len() as f64;
    if pairs.len() < 2 {
        return f32::NAN;
    }
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in &pairs {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxy / (sxx * syy).sqrt()) as f32
}

#[cfg(test)]
mod tests {
    use super::pearson;

    #[test]
    fn pearson_of_hand_made_columns() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-6);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-6);
        // x = (1, 2, 3, 4), y = (1, 3, 2, 4): cov 1.0, var 1.25 each -> r = 0.8.
        assert!((pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]) - 0.8).abs() < 1e-6);
        // Pairs with a NaN are left out; a single pair has no correlation.
        assert!((pearson(&[1.0, f32::NAN, 2.0], &[5.0, 1.0, 7.0]) - 1.0).abs() < 1e-6);
        assert!(pearson(&[1.0], &[2.0]).is_nan());
    }
}
