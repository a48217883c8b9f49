//! The DAS tutorial's setting for each model: prompts, site and answer tokens. The tutorial ran
//! on Llama-3.2-1B; SmolLM2-135M needs a fuller prompt and a later layer (see [`Setting::smollm2`]),
//! Gemma-3-270M a shorter one ([`Setting::gemma3_270m`]). [`outcome()`] runs its main cells in one
//! call, for setting models side by side.

mod outcome;

pub use outcome::{Outcome, OutcomeRow, outcome};

/// Everything that differs between the tutorial's model and ours.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// What to load: `"default"` for SmolLM2, else a path or hub id.
    pub model: String,
    pub base: String,
    pub source: String,
    pub continent: String,
    pub language: String,
    /// Layer whose output is patched.
    pub layer: usize,
    /// Token position of the city in base and source prompts.
    pub position: usize,
    /// The base and source cities: the tokens patched (`lm.pair(..)?.at(base_city, source_city)`).
    pub base_city: String,
    pub source_city: String,
    /// The source city's country (the DAS target).
    pub target: String,
    /// Answers whose probabilities the plots follow, per prompt kind.
    pub country_answers: Vec<String>,
    pub continent_answers: Vec<String>,
    pub language_answers: Vec<String>,
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

impl Setting {
    /// SmolLM2-135M-Instruct: it does not know "Paris is in the country of" (France p = 0.03)
    /// but knows "The city of Paris is in the country of" (France 0.76). The city is token 3
    /// (the model adds no BOS), and layer 9 of 30 plays the tutorial's layer 8 of 16.
    pub fn smollm2() -> Self {
        Setting {
            model: "default".into(),
            base: "The city of Paris is in the country of".into(),
            source: "The city of Rio is in the country of".into(),
            continent: "The city of Paris is in the continent of".into(),
            language: "The city of Paris is a city whose main language is".into(),
            layer: 9,
            position: 3,
            base_city: "Paris".into(),
            source_city: "Rio".into(),
            target: " Brazil".into(),
            country_answers: strings(&[" France", " Brazil"]),
            continent_answers: strings(&[" Europe", " South"]),
            language_answers: strings(&[" French", " Spanish", " Portuguese"]),
        }
    }

    /// The tutorial's own setting: Llama-3.2-1B (hub id, gated: needs HF_TOKEN), its short
    /// prompts, layer 8, token 1 (token 0 is BOS).
    pub fn llama_3_2_1b() -> Self {
        Setting {
            model: "meta-llama/Llama-3.2-1B".into(),
            base: "Paris is in the country of".into(),
            source: "Rio is in the country of".into(),
            continent: "Paris is in the continent of".into(),
            language: "Paris is a city whose main language is".into(),
            layer: 8,
            position: 1,
            ..Self::smollm2()
        }
    }

    /// Gemma-3-270M (`scripts/fetch-model.sh gemma3-270m`): "Paris is a city in the country
    /// of" → France 0.85, Rio's → Brazil 0.55 (the longer "The city of Paris is in the country
    /// of" puts " the" first). The city is token 1, after `<bos>`, as in the tutorial. Patching
    /// the city's block output moves Paris to Brazil (p 0.57–0.72) at every layer to 11 and not
    /// at all from 12 (transformers, same GGUF); layer 8 of 18 plays the tutorial's 8 of 16.
    pub fn gemma3_270m() -> Self {
        Setting {
            model: "gemma3-270m".into(),
            base: "Paris is a city in the country of".into(),
            source: "Rio is a city in the country of".into(),
            continent: "Paris is a city on the continent of".into(),
            language: "Paris is a city whose main language is".into(),
            layer: 8,
            position: 1,
            ..Self::smollm2()
        }
    }

    /// The setting for a model name: the tutorial's for Llama-3.2-1B, Gemma-3-270M's for it,
    /// SmolLM2's otherwise.
    pub fn for_model(model: &str) -> Self {
        if model.contains("Llama-3.2-1B") {
            Self::llama_3_2_1b()
        } else if model == "gemma3-270m" || model.contains("gemma-3-270m") {
            Setting {
                model: model.into(),
                ..Self::gemma3_270m()
            }
        } else {
            Setting {
                model: model.into(),
                ..Self::smollm2()
            }
        }
    }
}
