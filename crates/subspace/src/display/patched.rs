//! [`Patched`]: a base prompt's next-token distribution before and after an intervention,
//! shown as a table of the top answers and a plot of how they shifted.

use std::fmt;

use super::plot::{Svg, grouped_bars_highlighting};
use super::table::Comparison;
use crate::error::Result;
use crate::readout::Prediction;

/// How many of each distribution's most likely tokens the plot shows (their union).
const PLOT_TOP: usize = 5;
/// How many rows the text table shows.
const TABLE_TOP: usize = 3;

/// What a patch did to the base prompt's next token.
#[derive(Debug, Clone)]
pub struct Patched {
    /// What was patched into what (the plot's title).
    pub title: String,
    pub before: Prediction,
    pub after: Prediction,
    /// Tokens marked in the plot: by default the most likely token before and after.
    pub highlighted: Vec<u32>,
}

impl Patched {
    /// `before` and `after` must be distributions of the same model's vocabulary (an
    /// [`crate::SubspaceError::OtherModel`] error otherwise).
    pub fn new(title: String, before: Prediction, after: Prediction) -> Result<Self> {
        before.check_comparable(&after)?;
        let mut highlighted = vec![before.argmax().id, after.argmax().id];
        highlighted.dedup();
        Ok(Patched {
            title,
            before,
            after,
            highlighted,
        })
    }

    /// Marks these answers in the plot (each one token, e.g. `" Brazil"`), and makes sure they
    /// are shown even if they are not among the most likely.
    pub fn highlight<S: AsRef<str>>(mut self, words: &[S]) -> Result<Self> {
        self.highlighted = words
            .iter()
            .map(|w| self.before.token_id(w.as_ref()))
            .collect::<Result<_>>()?;
        Ok(self)
    }

    /// Replaces the plot's title.
    pub fn titled(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// `p(word)` after minus before.
    pub fn shift(&self, word: &str) -> Result<f32> {
        Ok(self.after.prob_of(word)? - self.before.prob_of(word)?)
    }

    /// The tokens the plot shows: the union of both distributions' top tokens and the
    /// highlighted ones, most likely (before or after) first.
    pub fn shown_tokens(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.highlighted.clone();
        for t in self
            .before
            .top(PLOT_TOP)
            .0
            .iter()
            .chain(&self.after.top(PLOT_TOP).0)
        {
            ids.push(t.id);
        }
        ids.sort_unstable();
        ids.dedup();
        let peak = |id: u32| self.before.prob(id).max(self.after.prob(id));
        ids.sort_by(|&a, &b| peak(b).total_cmp(&peak(a)));
        ids
    }

    /// Grouped bars of every shown token's probability, before and after, the highlighted
    /// answers marked.
    pub fn plot(&self) -> Result<Svg> {
        let ids = self.shown_tokens();
        let names: Vec<String> = ids.iter().map(|&id| self.before.token_text(id)).collect();
        let marked: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| self.highlighted.contains(id))
            .map(|(i, _)| i)
            .collect();
        grouped_bars_highlighting(
            &self.title,
            &names,
            &[
                (
                    "before".into(),
                    ids.iter().map(|&i| self.before.prob(i)).collect(),
                ),
                (
                    "after".into(),
                    ids.iter().map(|&i| self.after.prob(i)).collect(),
                ),
            ],
            &marked,
        )
    }

    fn table(&self) -> Comparison {
        Comparison {
            titles: ["before".into(), "after".into()],
            left: self.before.top(TABLE_TOP),
            right: self.after.top(TABLE_TOP),
        }
    }

    /// evcxr's display hook: the table as text, then the plot.
    pub fn evcxr_display(&self) {
        print!("{self}");
        match self.plot() {
            Ok(svg) => svg.evcxr_display(),
            Err(e) => println!("(no plot: {e})"),
        }
    }
}

impl fmt::Display for Patched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        write!(f, "{}", self.table())?;
        for &id in &self.highlighted {
            let (b, a) = (self.before.prob(id), self.after.prob(id));
            writeln!(
                f,
                "{:>16}: {b:.3} → {a:.3} ({:+.3})",
                format!("{:?}", self.before.token_text(id)),
                a - b
            )?;
        }
        Ok(())
    }
}
