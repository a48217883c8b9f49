//! The tutorial's main cells in one call: the three prompts before any edit, after residual
//! patching and after a trained one-dimensional DAS rotation, as numbers (a table and a plot), so
//! that two models can be set side by side.

use std::fmt;

use super::Setting;
use crate::display::plot::grouped_bars_highlighting;
use crate::display::{Svg, html_escape};
use crate::error::Result;
use crate::intervention::Intervention;
use crate::lm::LanguageModel;
use crate::site::Site;
use crate::train::{self, DasConfig};

/// One followed answer on one prompt: its probability before any edit and after each patch.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRow {
    /// Which prompt: `country`, `continent` or `language`.
    pub prompt: &'static str,
    pub answer: String,
    pub clean: f32,
    pub residual: f32,
    pub das: f32,
}

/// The tutorial's results on one model ([`outcome`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The model's name (its file or hub id).
    pub model: String,
    pub site: Site,
    /// The DAS loss before the first step and after the last.
    pub das_loss: (f32, f32),
    pub rows: Vec<OutcomeRow>,
}

/// Runs the tutorial's main cells on `lm` with `setting`: the residual patch of the city's block
/// output at `setting.layer` (source: `setting.source`), then DAS with one rotated dimension
/// trained for `steps` Adam steps at learning rate 1e-3 (the tutorial's) on the country prompt
/// alone, each patch read on the country, continent and language prompts.
pub fn outcome(lm: &LanguageModel, setting: &Setting, steps: usize) -> Result<Outcome> {
    let site = Site::block_output(setting.layer);
    let pair = lm
        .pair(&setting.base, &setting.source)?
        .at(&setting.base_city, &setting.source_city)?;
    let prompts = [
        ("country", pair.clone(), &setting.country_answers),
        (
            "continent",
            pair.with_base(lm.prompt(&setting.continent)?, &setting.base_city)?,
            &setting.continent_answers,
        ),
        (
            "language",
            pair.with_base(lm.prompt(&setting.language)?, &setting.base_city)?,
            &setting.language_answers,
        ),
    ];
    let mut das = Intervention::random_rotation(lm.hidden_size(), 1, 0, &lm.device())?;
    let example = pair.clone().with_target(lm.token(&setting.target)?);
    let report = train::train(
        lm,
        &mut das,
        &[example],
        &DasConfig::new(site, steps),
        |_| {},
    )?;
    let residual = Intervention::Replace.at(site);
    let trained = das.at(site);
    let mut rows = Vec::new();
    for (prompt, pair, answers) in prompts {
        let by_residual = lm.patch(&pair, &residual)?;
        let by_das = lm.patch(&pair, &trained)?;
        for answer in answers {
            rows.push(OutcomeRow {
                prompt,
                answer: answer.clone(),
                clean: by_residual.before.prob_of(answer)?,
                residual: by_residual.after.prob_of(answer)?,
                das: by_das.after.prob_of(answer)?,
            });
        }
    }
    let first = report.losses.first().copied().unwrap_or(f32::NAN);
    let last = report.losses.last().copied().unwrap_or(f32::NAN);
    Ok(Outcome {
        model: lm.name.clone(),
        site,
        das_loss: (first, last),
        rows,
    })
}

impl Outcome {
    /// The probabilities as grouped bars: per answer, before, after residual patching, after DAS.
    pub fn plot(&self) -> Result<Svg> {
        let categories: Vec<String> = self
            .rows
            .iter()
            .map(|r| format!("{}: {:?}", r.prompt, r.answer))
            .collect();
        let column = |f: fn(&OutcomeRow) -> f32| self.rows.iter().map(f).collect::<Vec<f32>>();
        grouped_bars_highlighting(
            &format!("{} at {}", self.model, self.site),
            &categories,
            &[
                ("before".into(), column(|r| r.clean)),
                ("residual patch".into(), column(|r| r.residual)),
                ("DAS, 1 dim".into(), column(|r| r.das)),
            ],
            &[],
        )
    }

    /// evcxr's display hook: the table, then the plot.
    pub fn evcxr_display(&self) {
        let mut html = format!(
            "<b>{}</b> at {}: DAS loss {:.3} → {:.3}<table><thead><tr><th>prompt</th><th>answer</th><th>before</th><th>residual patch</th><th>DAS</th></tr></thead><tbody>",
            html_escape(&self.model),
            self.site,
            self.das_loss.0,
            self.das_loss.1
        );
        for r in &self.rows {
            html.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                r.prompt,
                html_escape(&format!("{:?}", r.answer)),
                r.clean,
                r.residual,
                r.das
            ));
        }
        html.push_str("</tbody></table>");
        println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT");
        if let Ok(svg) = self.plot() {
            svg.evcxr_display();
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} at {}: DAS loss {:.3} -> {:.3}",
            self.model, self.site, self.das_loss.0, self.das_loss.1
        )?;
        writeln!(
            f,
            "{:<10} {:<14} {:>7} {:>9} {:>7}",
            "prompt", "answer", "before", "residual", "DAS"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<10} {:<14} {:>7.3} {:>9.3} {:>7.3}",
                r.prompt,
                format!("{:?}", r.answer),
                r.clean,
                r.residual,
                r.das
            )?;
        }
        Ok(())
    }
}
