//! How many RAVEL cities and templates does the model know? (A quick look before the real run.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use subspace::LanguageModel;
use subspace::ravel::{RavelData, Split, probe};

fn main() {
    let lm = LanguageModel::load_default().unwrap();
    let data = RavelData::load(&RavelData::default_dir()).unwrap();
    let n: usize = std::env::args().nth(1).map_or(60, |s| s.parse().unwrap());
    let per: usize = std::env::args().nth(2).map_or(6, |s| s.parse().unwrap());
    let split = Split::Train;
    let cities: Vec<usize> = (0..data.cities.len())
        .filter(|&i| data.cities[i].split == split)
        .step_by(7)
        .take(n)
        .collect();
    let templates = probe::templates_of(&data, split, 1000);
    let t = std::time::Instant::now();
    let report = probe::probe(&lm, &data, &cities, &templates, 64, |_, _| {}).unwrap();
    println!(
        "{} prompts tried, {} known, {} of {} cities known on all three, {:.1} s",
        report.tried,
        report.known.len(),
        report.cities_known_on_all.len(),
        cities.len(),
        t.elapsed().as_secs_f64()
    );
    let mut per_template: Vec<(usize, usize)> = templates
        .iter()
        .map(|&ti| (report.known.iter().filter(|k| k.template == ti).count(), ti))
        .collect();
    per_template.sort_by(|a, b| b.cmp(a));
    for (count, ti) in per_template.iter().take(per * 3) {
        println!(
            "{count:>3} {:?} {:?}",
            data.templates[*ti].attribute, data.templates[*ti].text
        );
    }
}
