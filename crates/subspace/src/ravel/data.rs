//! The RAVEL city files (`data/ravel/`): entities, their attributes, prompt templates and splits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, SubspaceError};

/// train / val / test, for entities and for templates alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// "train", "val" or "test" (as in the JSON files).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// The split named `s` (as [`Split::name`] writes it).
    pub fn parse(s: &str) -> Result<Self> {
        Split::ALL
            .into_iter()
            .find(|split| split.name() == s)
            .map_or_else(
                || crate::error::bad_setting("split", format!("{s:?}"), "train, val or test"),
                Ok,
            )
    }
}

/// The attributes the evaluation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Attribute {
    Country,
    Continent,
    Language,
}

impl Attribute {
    pub const ALL: [Attribute; 3] = [
        Attribute::Country,
        Attribute::Continent,
        Attribute::Language,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Attribute::Country => "Country",
            Attribute::Continent => "Continent",
            Attribute::Language => "Language",
        }
    }
}

/// A prompt template with `%s` for the city.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub text: String,
    pub attribute: Attribute,
    pub split: Split,
}

impl Template {
    /// The text before and after the city.
    pub fn parts(&self) -> (&str, &str) {
        self.text.split_once("%s").unwrap_or((&self.text, ""))
    }

    pub fn fill(&self, city: &str) -> String {
        let (a, b) = self.parts();
        format!("{a}{city}{b}")
    }
}

/// One city with its split and attribute values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct City {
    pub name: String,
    pub split: Split,
    pub country: String,
    pub continent: String,
    pub language: String,
}

impl City {
    pub fn value(&self, attribute: Attribute) -> &str {
        match attribute {
            Attribute::Country => &self.country,
            Attribute::Continent => &self.continent,
            Attribute::Language => &self.language,
        }
    }
}

/// The RAVEL city dataset.
#[derive(Debug, Clone)]
pub struct RavelData {
    pub cities: Vec<City>,
    pub templates: Vec<Template>,
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<T> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| SubspaceError::Io {
        action: "read",
        path: path.clone(),
        source: e,
    })?;
    serde_json::from_str(&text).map_err(|e| SubspaceError::BadFile {
        path,
        reason: e.to_string(),
    })
}

impl RavelData {
    /// `data/ravel` of this repository, found from the current directory upwards.
    pub fn default_dir() -> PathBuf {
        let rel = Path::new("data").join("ravel");
        if let Ok(cwd) = std::env::current_dir() {
            for dir in cwd.ancestors() {
                if dir
                    .join(&rel)
                    .join("ravel_city_entity_attributes.json")
                    .is_file()
                {
                    return dir.join(&rel);
                }
            }
        }
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel)
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let attributes: BTreeMap<String, BTreeMap<String, String>> =
            read_json(dir, "ravel_city_entity_attributes.json")?;
        let entity_split: BTreeMap<String, Split> =
            read_json(dir, "ravel_city_entity_to_split.json")?;
        let prompts: BTreeMap<String, Vec<String>> =
            read_json(dir, "ravel_city_attribute_to_prompts.json")?;
        let prompt_split: BTreeMap<String, Split> =
            read_json(dir, "ravel_city_prompt_to_split.json")?;
        let cities = attributes
            .into_iter()
            .filter_map(|(name, attrs)| {
                Some(City {
                    split: *entity_split.get(&name)?,
                    country: attrs.get("Country")?.clone(),
                    continent: attrs.get("Continent")?.clone(),
                    language: attrs.get("Language")?.clone(),
                    name,
                })
            })
            .collect();
        let mut templates = Vec::new();
        for attribute in Attribute::ALL {
            for text in prompts.get(attribute.key()).into_iter().flatten() {
                if let Some(&split) = prompt_split.get(text)
                    && text.matches("%s").count() == 1
                {
                    templates.push(Template {
                        text: text.clone(),
                        attribute,
                        split,
                    });
                }
            }
        }
        Ok(RavelData { cities, templates })
    }
}
