//! Times `generate_batch` (what the RAVEL probe runs): `ROWS` few-shot prompts, 4 new tokens
//! each (a development aid).
//!
//!     cargo run --release -p subspace --example generate_batch_bench -- [MODEL] [ROWS]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use subspace::LanguageModel;

fn main() {
    let mut args = std::env::args().skip(1);
    let spec = args.next().unwrap_or_else(|| "default".into());
    let rows: usize = args
        .next()
        .map_or(128, |r| r.parse().expect("ROWS is a number"));
    let lm = LanguageModel::load(&spec).unwrap();
    let cities = [
        "Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Seoul", "Rome", "Delhi",
    ];
    // Templates that share no beginning (as the probe's mix of attributes and formats), or
    // with `same` one few-shot template for every row.
    let same = std::env::var("SAME").is_ok();
    let templates = [
        "Toronto is a city in the country of Canada. Sydney is a city in the country of Australia. {} is a city in the country of",
        "Q: Which country is {} in? A:",
        "{\"city\": \"{}\", \"country\": \"",
        "In which country is {}? It is in",
        "The city of {} is located in the country of",
        "Name the country of {}:",
        "{} - country:",
        "Where is {}? In the country of",
    ];
    let prompts: Vec<_> = (0..rows)
        .map(|i| {
            let city = cities[i % cities.len()];
            let t = if same {
                templates[0]
            } else {
                templates[i % templates.len()]
            };
            lm.prompt(&t.replace("{}", city)).unwrap()
        })
        .collect();
    let t = Instant::now();
    let out = lm
        .generate_batch(&prompts.iter().collect::<Vec<_>>(), 4)
        .unwrap();
    println!(
        "{}: {rows} prompts of {} tokens, 4 new tokens: {:.2} s ({:.1} prompts/s); first: {:?}",
        lm.name,
        prompts[0].len(),
        t.elapsed().as_secs_f64(),
        rows as f64 / t.elapsed().as_secs_f64(),
        lm.decode(&out[0])
    );
}
