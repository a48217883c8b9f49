//! The logit lens (nostalgebraist 2020): each layer's residual stream read through the final norm
//! and the LM head, as if the model stopped there. Where along the layers, and at which token,
//! does the answer appear?

use burn::tensor::activation::softmax;

use crate::display::plot::{Svg, heatmap};
use crate::error::Result;
use crate::lm::{LanguageModel, Prompt};
use crate::readout::to_host;
use crate::site::Component;

/// The next-token distribution read off every block's output at every token.
#[derive(Debug, Clone)]
pub struct LogitLens {
    /// The prompt's tokens.
    pub tokens: Vec<String>,
    /// `[layer][position]`: the most likely token there and its probability.
    pub top: Vec<Vec<(String, f32)>>,
    /// The followed answers (one token each).
    pub answers: Vec<String>,
    /// `[answer][layer][position]`: the answer's probability there.
    pub answer_probs: Vec<Vec<Vec<f32>>>,
}

impl LanguageModel {
    /// The logit lens of `prompt`, following `answers` (words of one token each, e.g.
    /// `" France"`). One traced forward (block outputs only), then the head on every layer.
    pub fn logit_lens(&self, prompt: &Prompt, answers: &[&str]) -> Result<LogitLens> {
        let ids: Vec<u32> = answers
            .iter()
            .map(|a| self.token(a))
            .collect::<Result<_>>()?;
        let trace = self.trace_with(prompt, &[Component::BlockOutput])?;
        let n = self.n_layers();
        let s = prompt.len();
        let mut top = Vec::with_capacity(n);
        let mut answer_probs = vec![Vec::with_capacity(n); ids.len()];
        for layer in 0..n {
            let h = trace.trace.at(crate::site::Site::block_output(layer))?;
            let logits = self.model.logits(h);
            let [_, _, vocab] = logits.dims();
            let probs = to_host(softmax(logits.reshape([s, vocab]), 1))?;
            let mut row = Vec::with_capacity(s);
            for p in 0..s {
                let dist = &probs[p * vocab..(p + 1) * vocab];
                let (best, &pb) = dist
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap_or((0, &0.0));
                row.push((self.tokenizer.decode_one(best as u32), pb));
            }
            top.push(row);
            for (k, &id) in ids.iter().enumerate() {
                answer_probs[k].push((0..s).map(|p| probs[p * vocab + id as usize]).collect());
            }
        }
        Ok(LogitLens {
            tokens: prompt.tokens.clone(),
            top,
            answers: answers.iter().map(|a| a.to_string()).collect(),
            answer_probs,
        })
    }
}

impl LogitLens {
    /// p(answer) by layer and token, as a heatmap.
    pub fn heatmap(&self, answer: usize) -> Result<Svg> {
        let rows: Vec<String> = (0..self.top.len()).map(|l| l.to_string()).collect();
        heatmap(
            &format!(
                "logit lens: p({:?}) read off each layer's output",
                self.answers[answer]
            ),
            "layer",
            &rows,
            &self.tokens,
            &self.answer_probs[answer],
        )
    }

    /// The top token at the last position, layer by layer.
    pub fn last_token_tops(&self) -> Vec<(String, f32)> {
        self.top
            .iter()
            .map(|row| row.last().cloned().unwrap_or_default())
            .collect()
    }
}
