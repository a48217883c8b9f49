//! The `subspace` binary as a user meets it: JSON shapes, and one clear line (no backtrace, exit
//! code 1) for each mistake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

const PARIS: &str = "The city of Paris is in the country of";
const RIO: &str = "The city of Rio is in the country of";

fn subspace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_subspace"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        text.trim().lines().count(),
        1,
        "exactly one JSON object: {text}"
    );
    serde_json::from_str(&text).unwrap()
}

/// A command line the argument parser refuses: exit code 2 and a message naming the choices.
fn misused(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "{n:?} not in stderr: {err}");
    }
}

fn fails_with(out: &Output, needles: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "{n:?} not in stderr: {err}");
    }
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
}

#[test]
fn topk_json_has_the_promised_shape_and_france_first() {
    let v = json(&subspace(&[
        "topk", "--prompt", PARIS, "--k", "3", "--json",
    ]));
    assert_eq!(v["prompt"], PARIS);
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 9);
    assert_eq!(v["tokens"][3], " Paris");
    let top = v["topk"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert_eq!(top[0]["token"], " France");
    let p = top[0]["prob"].as_f64().unwrap();
    assert!((p - 0.76).abs() < 0.01, "{p}");
    assert!(top[0]["id"].as_u64().is_some());
}

#[test]
fn patch_json_moves_paris_to_brazil() {
    let v = json(&subspace(&[
        "patch",
        "--base",
        PARIS,
        "--source",
        RIO,
        "--layer",
        "9",
        "--position",
        "3",
        "--json",
    ]));
    assert_eq!(v["base_topk"][0]["token"], " France");
    assert_eq!(v["patched_topk"][0]["token"], " Brazil");
}

/// `subspace attribute --json`: the metric on both runs and one estimate per layer, head and
/// position; `--check` patches the largest for real, and the linear estimate lands near it.
#[test]
fn attribute_json_lists_every_head_and_checks_the_largest() {
    let out = subspace(&[
        "attribute",
        "--base",
        PARIS,
        "--source",
        RIO,
        "--target",
        " Brazil",
        "--versus",
        " France",
        "--component",
        "head_output",
        "--check",
        "2",
        "--json",
    ]);
    let v = json(&out);
    assert!(v["metric"]["base"].as_f64().unwrap() < 0.0);
    assert!(v["metric"]["source"].as_f64().unwrap() > 0.0);
    // 30 layers × 9 heads × 9 positions (base and source have the same length).
    assert_eq!(v["estimates"].as_array().unwrap().len(), 30 * 9 * 9);
    let first = &v["check"][0];
    assert_eq!(
        (first["layer"].as_u64(), first["head"].as_u64()),
        (Some(23), Some(4))
    );
    let (estimate, patched) = (
        first["estimate"].as_f64().unwrap(),
        first["patched"].as_f64().unwrap(),
    );
    assert!(estimate > 5.0 && patched > 5.0, "{first}");
    let out = subspace(&[
        "attribute",
        "--base",
        PARIS,
        "--source",
        RIO,
        "--target",
        " Brazil",
        "--neurons",
    ]);
    fails_with(&out, &["--component mlp_hidden"]);
}

#[test]
fn a_trained_intervention_saved_by_das_is_applied_by_patch_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("brazil.safetensors");
    let file = file.to_str().unwrap();
    let trained = json(&subspace(&[
        "das",
        "--base",
        PARIS,
        "--source",
        RIO,
        "--target",
        " Brazil",
        "--layer",
        "9",
        "--position",
        "3",
        "--dims",
        "1",
        "--steps",
        "10",
        "--save",
        file,
        "--json",
    ]));
    assert_eq!(trained["patched_topk"][0]["token"], " Brazil");
    let applied = json(&subspace(&[
        "patch",
        "--base",
        PARIS,
        "--source",
        RIO,
        "--position",
        "3",
        "--load",
        file,
        "--json",
    ]));
    // Same site, same weights: the same distribution (printed to 4 decimals or more).
    for (a, b) in applied["patched_topk"]
        .as_array()
        .unwrap()
        .iter()
        .zip(trained["patched_topk"].as_array().unwrap())
    {
        assert_eq!(a["token"], b["token"]);
        let (pa, pb) = (a["prob"].as_f64().unwrap(), b["prob"].as_f64().unwrap());
        assert!((pa - pb).abs() < 1e-4, "{pa} vs {pb}");
    }
}

#[test]
fn mistakes_get_one_clear_line() {
    fails_with(
        &subspace(&[
            "topk",
            "--prompt",
            "x",
            "--model",
            "/nonexistent/model.gguf",
        ]),
        &["does not exist", "scripts/setup.sh"],
    );
    fails_with(
        &subspace(&[
            "patch",
            "--base",
            PARIS,
            "--source",
            RIO,
            "--layer",
            "30",
            "--position",
            "3",
        ]),
        &["layer 30", "0 to 29"],
    );
    fails_with(
        &subspace(&[
            "patch",
            "--base",
            PARIS,
            "--source",
            RIO,
            "--layer",
            "9",
            "--position",
            "9",
        ]),
        &["position 9", "base"],
    );
    fails_with(
        &subspace(&[
            "patch",
            "--base",
            PARIS,
            "--source",
            RIO,
            "--layer",
            "9",
            "--position",
            "3",
            "--dims",
            "600",
        ]),
        &["600"],
    );
    fails_with(
        &subspace(&[
            "das",
            "--base",
            PARIS,
            "--source",
            RIO,
            "--target",
            " Ouagadougou",
            "--layer",
            "9",
            "--position",
            "3",
            "--dims",
            "1",
            "--steps",
            "1",
        ]),
        &["tokens", "one token"],
    );
    fails_with(&subspace(&["topk", "--prompt", ""]), &["empty"]);
    fails_with(
        &subspace(&["topk", "--prompt", "x", "--backend", "tpu"]),
        &["unknown backend"],
    );
    fails_with(
        &subspace(&[
            "das",
            "--base",
            PARIS,
            "--source",
            RIO,
            "--target",
            " Brazil",
            "--layer",
            "9",
            "--position",
            "3",
            "--dims",
            "0",
        ]),
        &["--dims", "at least 1"],
    );
    fails_with(
        &subspace(&["ravel", "--method", "das", "--layer", "31", "--steps", "1"]),
        &["layer 31"],
    );
    // Choices are checked by the argument parser (exit code 2, as for any misused option).
    misused(
        &subspace(&[
            "ravel", "--method", "mdas", "--layer", "9", "--decay", "sideways",
        ]),
        &["sideways", "constant, linear, cosine"],
    );
    misused(
        &subspace(&["ravel", "--method", "rotation", "--layer", "9"]),
        &[
            "rotation",
            "residual, neurons, das, lowrank, boundless, mdas",
        ],
    );
    fails_with(
        &subspace(&[
            "ravel", "--method", "mdas", "--layer", "9", "--warmup", "1.5",
        ]),
        &["warm-up", "below 1"],
    );
    misused(
        &subspace(&[
            "ravel-score",
            "/nonexistent/run.safetensors",
            "--split",
            "dev",
        ]),
        &["'dev'", "train, val, test"],
    );
    fails_with(
        &subspace(&["ravel-score", "/nonexistent/run.safetensors"]),
        &["no saved run", "run.safetensors", "subspace ravel --save"],
    );
    fails_with(
        &subspace(&[
            "patch",
            "--base",
            PARIS,
            "--source",
            RIO,
            "--position",
            "3",
            "--load",
            "/nonexistent/iv.safetensors",
        ]),
        &["cannot read", "iv.safetensors"],
    );
}

/// `subspace ravel-score` on a `--save`d run scores the same pairs the run scored, so it prints
/// the run's own numbers, now with Isolate split by attribute and Cause by source country.
#[test]
fn ravel_score_rescores_a_saved_run_as_it_was_scored() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("das.safetensors");
    let file = file.to_str().unwrap();
    let run = json(&subspace(&[
        "ravel",
        "--method",
        "das",
        "--layer",
        "9",
        "--steps",
        "2",
        "--train-pairs",
        "8",
        "--eval-pairs",
        "8",
        "--save",
        file,
        "--json",
    ]));
    let scored = json(&subspace(&[
        "ravel-score",
        file,
        "--split",
        "val",
        "--split",
        "test",
        "--by-country",
        "--json",
    ]));
    assert_eq!(
        (scored["method"].as_str(), scored["layer"].as_u64()),
        (Some("das"), Some(9))
    );
    for split in ["val", "test"] {
        let (was, now) = (&run[split], &scored["scores"][split]);
        for key in [
            "cause",
            "isolate",
            "n_cause",
            "n_isolate",
            "isolate_continent",
            "n_language",
        ] {
            assert_eq!(was[key], now[key], "{split} {key}");
        }
        let n = now["n_continent"].as_u64().unwrap() + now["n_language"].as_u64().unwrap();
        assert_eq!(Some(n), now["n_isolate"].as_u64(), "{split}");
        // The countries partition the cause pairs, and their hits make up Cause.
        let rows = now["by_country"].as_array().unwrap();
        let total = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
        assert_eq!(Some(total("pairs")), now["n_cause"].as_u64(), "{split}");
        let cause = total("hits") as f64 / total("pairs") as f64;
        assert!(
            (cause - now["cause"].as_f64().unwrap()).abs() < 1e-12,
            "{split}"
        );
    }
    assert!(
        scored["scores"]["train"].is_null(),
        "only the splits asked for"
    );
}

/// Ctrl-C (SIGINT) and SIGTERM during `subspace das --checkpoint`: the run stops after a step
/// with exit code 130 and a whole checkpoint, and running the same command again resumes it to
/// exactly the losses and weights of a run that was never stopped.
#[test]
fn a_signal_during_das_leaves_a_checkpoint_that_resumes_exactly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (checkpoint, resumed_file, straight_file) = (
        path("run.ckpt"),
        path("resumed.safetensors"),
        path("straight.safetensors"),
    );
    let args = |checkpoint: Option<&str>, save: &str| -> Vec<String> {
        let mut a: Vec<String> = [
            "das",
            "--base",
            PARIS,
            "--source",
            RIO,
            "--target",
            " Brazil",
            "--layer",
            "9",
            "--position",
            "3",
            "--dims",
            "2",
            "--steps",
            "24",
            "--seed",
            "3",
            "--save",
            save,
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(c) = checkpoint {
            a.extend([
                "--checkpoint".into(),
                c.into(),
                "--checkpoint-every".into(),
                "5".into(),
            ]);
        }
        a
    };
    // Runs until stderr reports step `at`, then sends `signal`; returns the exit code and stderr.
    let interrupt = |at: usize, signal: libc::c_int| -> (Option<i32>, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_subspace"))
            .args(args(Some(&checkpoint), &resumed_file))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 {
            seen.push_str(&line);
            if line.starts_with(&format!("step {at}/")) {
                let pid = libc::pid_t::try_from(child.id()).unwrap();
                // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
                assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
                break;
            }
            line.clear();
        }
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        seen.push_str(&rest);
        (child.wait().unwrap().code(), seen)
    };
    let (code, err) = interrupt(3, libc::SIGINT);
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.contains("stopped on request after step") && err.contains("run.ckpt"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let (code, err) = interrupt(9, libc::SIGTERM);
    assert_eq!(code, Some(130), "{err}");
    // It went on from the checkpoint, not from the start.
    assert!(!err.contains("step 1/24"), "{err}");
    let owned = args(Some(&checkpoint), &resumed_file);
    let resumed = json(&subspace(
        &owned.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let owned = args(None, &straight_file);
    let straight = json(&subspace(
        &owned.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert_eq!(resumed["losses"], straight["losses"]);
    assert_eq!(resumed["losses"].as_array().unwrap().len(), 24);
    // The saved weights are the same bits (the notes hold the same losses too).
    let tensors = |file: &str| {
        let bytes = std::fs::read(file).unwrap();
        let (n, _) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        bytes[8 + n..].to_vec()
    };
    assert_eq!(tensors(&resumed_file), tensors(&straight_file));
}

#[test]
fn generate_continues_the_tutorial_prompt_and_the_patch_sends_paris_to_brazil() {
    let v = json(&subspace(&[
        "generate",
        "--prompt",
        PARIS,
        "-n",
        "3",
        "--source",
        RIO,
        "--layer",
        "9",
        "--position",
        "3",
        "--json",
    ]));
    assert!(v["text"].as_str().unwrap().starts_with(" France"), "{v}");
    assert!(
        v["patched_text"].as_str().unwrap().starts_with(" Brazil"),
        "{v}"
    );
    assert_eq!(v["patched_ids"].as_array().unwrap().len(), 3);
}

/// `subspace bench --json` names the processor its figures were measured on, as /proc/cpuinfo
/// does, with the vector extensions the kernels choose from.
#[test]
fn bench_json_names_the_cpu_it_ran_on() {
    let v = json(&subspace(&[
        "bench",
        "--repeats",
        "1",
        "--skip-ravel",
        "--json",
    ]));
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string());
    assert_eq!(v["cpu"]["model"].as_str().map(String::from), model, "{v}");
    let flags = v["cpu"]["flags"].as_array().unwrap();
    let has = |f: &str| info.split_whitespace().any(|x| x == f);
    assert_eq!(flags.iter().any(|f| f == "avx2"), has("avx2"), "{v}");
    assert_eq!(
        flags.iter().any(|f| f == "avx512_bf16"),
        has("avx512_bf16"),
        "{v}"
    );
    assert!(v["forward_s"].as_f64().unwrap() > 0.0, "{v}");
    // The ceilings it measured, with the widest vectors /proc/cpuinfo says the CPU has.
    let roof = &v["roofline"];
    let isa = if has("avx512f") {
        "avx512"
    } else if has("avx2") && has("fma") {
        "avx2"
    } else {
        "scalar"
    };
    assert_eq!(roof["isa"], isa, "{v}");
    assert!(roof["peak_gflops"].as_f64().unwrap() > 1.0, "{v}");
    assert!(roof["read_gbs"].as_f64().unwrap() > 0.1, "{v}");
    // The bf16 peak exactly where the CPU has vdpbf16ps.
    assert_eq!(
        roof["peak_bf16_gflops"].as_f64().is_some_and(|g| g > 1.0),
        has("avx512_bf16") && has("avx512f"),
        "{v}"
    );
}

/// The transformers fixture of the sites inside a block (`scripts/make_fixtures.py inner`).
fn inner_fixture() -> (serde_json::Value, std::path::PathBuf) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../subspace/tests/fixtures");
    let meta = std::fs::read_to_string(dir.join("inner_sites.json")).unwrap();
    (
        serde_json::from_str(&meta).unwrap(),
        dir.join("inner_sites_logits.safetensors"),
    )
}

/// The top-3 (id, prob) of the fixture's logits `name`.
fn fixture_top3(path: &std::path::Path, name: &str) -> Vec<(u64, f64)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let logits: Vec<f64> = st
        .tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = logits.iter().map(|v| (v - m).exp()).sum();
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    ids.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    ids[..3]
        .iter()
        .map(|&i| (i as u64, (logits[i] - m).exp() / z))
        .collect()
}

fn assert_top3(v: &serde_json::Value, want: &[(u64, f64)]) {
    let top = v["patched_topk"].as_array().unwrap();
    for (got, (id, p)) in top.iter().zip(want) {
        assert_eq!(got["id"].as_u64().unwrap(), *id, "{v}");
        let prob = got["prob"].as_f64().unwrap();
        assert!((prob - p).abs() < 1e-3, "{prob} vs {p}");
    }
}

#[test]
fn patch_at_a_head_and_at_a_span_matches_transformers_hooks() {
    let (fix, logits) = inner_fixture();
    let v = json(&subspace(&[
        "patch",
        "--base",
        PARIS,
        "--source",
        RIO,
        "--layer",
        "9",
        "--component",
        "head_output",
        "--head",
        "4",
        "--positions",
        "3",
        "--json",
    ]));
    assert_top3(&v, &fixture_top3(&logits, "patched.head_output"));
    let v = json(&subspace(&[
        "patch",
        "--base",
        PARIS,
        "--source",
        RIO,
        "--layer",
        "9",
        "--component",
        "mlp_hidden",
        "--positions",
        "3",
        "--json",
    ]));
    assert_top3(&v, &fixture_top3(&logits, "patched.mlp_hidden"));
    let span = &fix["span"];
    let join = |key: &str| -> String {
        span[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let (bases, sources) = (join("base_positions"), join("source_positions"));
    let v = json(&subspace(&[
        "patch",
        "--base",
        span["base"].as_str().unwrap(),
        "--source",
        span["source"].as_str().unwrap(),
        "--layer",
        "9",
        "--positions",
        &bases,
        "--source-positions",
        &sources,
        "--json",
    ]));
    assert_top3(&v, &fixture_top3(&logits, "patched.span"));
}

#[test]
fn mistakes_with_heads_and_positions_are_one_clear_line() {
    let base = ["patch", "--base", PARIS, "--source", RIO, "--layer", "9"];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        subspace(&args)
    };
    fails_with(
        &with(&["--component", "key", "--head", "3", "--positions", "3"]),
        &["head 3 of key does not exist", "shared by 3 query heads"],
    );
    fails_with(
        &with(&["--head", "0", "--positions", "3"]),
        &["block_output has no heads"],
    );
    fails_with(
        &with(&["--positions", "3,4", "--source-positions", "3"]),
        &["one source position per base position"],
    );
    fails_with(&with(&[]), &["--positions is required"]);
    misused(
        &with(&["--component", "heads", "--positions", "3"]),
        &["head_output", "mlp_hidden"],
    );
    fails_with(
        &subspace(&[
            "generate",
            "--prompt",
            PARIS,
            "-n",
            "2",
            "--temperature",
            "0",
        ]),
        &["temperature = 0"],
    );
    fails_with(
        &subspace(&[
            "generate",
            "--prompt",
            PARIS,
            "-n",
            "2",
            "--temperature",
            "1",
            "--top-p",
            "1.5",
        ]),
        &["top_p = 1.5"],
    );
}

#[test]
fn generate_holds_an_edit_on_every_token_and_samples_from_a_seed() {
    let (fix, _) = inner_fixture();
    let held = &fix["held"];
    let v = json(&subspace(&[
        "generate",
        "--prompt",
        PARIS,
        "-n",
        "12",
        "--source",
        RIO,
        "--layer",
        "9",
        "--source-positions",
        "3",
        "--hold",
        "--json",
    ]));
    assert_eq!(v["patched_ids"], held["replace"]["ids"], "{v}");
    let sampled = |seed: &str| {
        json(&subspace(&[
            "generate",
            "--prompt",
            "Once upon a time",
            "-n",
            "8",
            "--temperature",
            "1.0",
            "--top-p",
            "0.95",
            "--seed",
            seed,
            "--json",
        ]))["ids"]
            .clone()
    };
    assert_eq!(sampled("5"), sampled("5"));
}
