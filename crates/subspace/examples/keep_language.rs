//! Tries the tutorial's multi-task DAS (move the country, keep continent and language) and
//! prints the three prompts' answers: a development aid for the notebook's last section.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use subspace::{DasConfig, Intervention, LanguageModel, Site, train};

fn main() -> subspace::Result<()> {
    let lm = LanguageModel::load_default()?;
    let site = Site::block_output(9);
    let dims: usize = std::env::args().nth(1).map_or(1, |s| s.parse().unwrap());
    let steps: usize = std::env::args().nth(2).map_or(40, |s| s.parse().unwrap());
    let cities = [
        ("Paris", "Rio", " Brazil", " Europe", " French"),
        ("Tokyo", "Berlin", " Germany", " Asia", " Japanese"),
        ("Madrid", "Tokyo", " Japan", " Europe", " Spanish"),
        ("Berlin", "Paris", " France", " Europe", " German"),
        ("Rome", "Madrid", " Spain", " Europe", " Italian"),
    ];
    let n_cities: usize = std::env::args().nth(3).map_or(5, |s| s.parse().unwrap());
    let mut examples = Vec::new();
    for &(b, s, country, continent, language) in &cities[..n_cities] {
        let pair = lm
            .pair(
                &format!("The city of {b} is in the country of"),
                &format!("The city of {s} is in the country of"),
            )?
            .at(b, s)?;
        let on = |text: String| pair.with_base(lm.prompt(&text)?, b);
        examples.push(pair.clone().with_target(lm.token(country)?));
        examples.push(
            on(format!("The city of {b} is in the continent of"))?
                .with_target(lm.token(continent)?),
        );
        examples.push(
            on(format!("The city of {b} is a city whose main language is"))?
                .with_target(lm.token(language)?),
        );
    }
    let mut iv = Intervention::random_rotation(lm.hidden_size(), dims, 0, &lm.device())?;
    let t = std::time::Instant::now();
    train::train(&lm, &mut iv, &examples, &DasConfig::new(site, steps), |s| {
        if s.step % 10 == 0 {
            println!("{s}")
        }
    })?;
    println!("trained in {:.1} s", t.elapsed().as_secs_f64());
    let placed = iv.at(site);
    let pair = lm
        .pair(
            "The city of Paris is in the country of",
            "The city of Rio is in the country of",
        )?
        .at("Paris", "Rio")?;
    for base in [
        "The city of Paris is in the country of",
        "The city of Paris is in the continent of",
        "The city of Paris is a city whose main language is",
    ] {
        let p = pair.with_base(lm.prompt(base)?, "Paris")?;
        println!("{}", lm.patch(&p, &placed)?);
    }
    Ok(())
}
