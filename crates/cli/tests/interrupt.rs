//! Ctrl-C in the slowest phase of every long command (RELIABILITY.md, "Stopping"): a real
//! `subspace` process gets SIGINT while the phase runs and must exit with code 130 within 2 s,
//! with one line saying what it was doing and what it kept, and no file half-written — nor
//! any file at all where the command writes only once its work is done.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One signalled run at a time: each measures its own time to exit, on a 2-core machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What a signalled run did.
struct Stopped {
    code: Option<i32>,
    /// From the signal to the process's exit.
    exit_after: Duration,
    /// Everything it wrote on stderr.
    stderr: String,
    /// What it wrote on stderr after the signal.
    after_signal: String,
}

/// Runs `subspace args` until a stderr line contains `phase`, lets that phase run for
/// `into`, then sends SIGINT and waits for the exit.
fn interrupt_in(args: &[&str], phase: &str, into: Duration) -> Stopped {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(env!("CARGO_BIN_EXE_subspace"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut before = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(
            n > 0,
            "the command ended before the phase {phase:?}: {before} ({:?})",
            child.wait()
        );
        before.push_str(&line);
        if line.contains(phase) {
            break;
        }
    }
    // Keep reading stderr while the phase runs (a full pipe would stall the child).
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    std::thread::sleep(into);
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let signalled = Instant::now();
    let status = child.wait().unwrap();
    let exit_after = signalled.elapsed();
    let after_signal = drain.join().unwrap();
    Stopped {
        code: status.code(),
        exit_after,
        stderr: format!("{before}{after_signal}"),
        after_signal,
    }
}

impl Stopped {
    /// Exit code 130 within 2 s, no panic, the stop acknowledged, and the last line naming
    /// `what` the command was doing; `next_phase` must not have started (the signal landed
    /// inside the phase under test).
    fn check(&self, what: &str, next_phase: &str) {
        let err = &self.stderr;
        // Shown with --nocapture: the figures RELIABILITY.md records.
        println!(
            "exit {:?} after {:.3} s: {}",
            self.code,
            self.exit_after.as_secs_f64(),
            err.lines().last().unwrap_or_default()
        );
        assert_eq!(self.code, Some(130), "{err}");
        assert!(
            self.exit_after < Duration::from_secs(2),
            "exited {:?} after the signal: {err}",
            self.exit_after
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(self.after_signal.contains("stopping"), "{err}");
        assert!(
            !self.after_signal.contains(next_phase),
            "the phase had ended before the signal: {err}"
        );
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains(what), "last line {last:?}: {err}");
    }
}

/// Files in `dir`, by name (a leftover temporary file of an atomic write would show here).
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The settings of a small RAVEL run: the recipe's site with 16 dimensions.
fn ravel_args<'a>(save: &'a str, train_pairs: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "ravel",
        "--method",
        "das",
        "--layer",
        "15",
        "--dims",
        "16",
        "--train-pairs",
        train_pairs,
        "--steps",
        steps,
        "--eval-pairs",
        "50",
        "--save",
        save,
    ]
}

/// `subspace ravel` in its pass before training (the layers below the site over every train
/// example, ~80 ms an example): no `--save` file.
#[test]
fn ctrl_c_during_the_pass_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("run.safetensors");
    let args = ravel_args(save.to_str().unwrap(), "512", "2");
    let stopped = interrupt_in(&args, "training on", Duration::from_millis(700));
    stopped.check("interrupted while training on", "step 1/");
    assert!(
        stopped.stderr.contains("no --save file"),
        "{}",
        stopped.stderr
    );
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}

/// `subspace ravel` while scoring the train pairs (after training): no `--save` file.
#[test]
fn ctrl_c_while_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("run.safetensors");
    let args = ravel_args(save.to_str().unwrap(), "256", "1");
    let stopped = interrupt_in(&args, "scoring the", Duration::from_millis(700));
    stopped.check("interrupted while scoring the", "scoring val");
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}

/// `subspace ravel --checkpoint` during training: the checkpoint holds the finished steps and
/// the message says to resume from it.
#[test]
fn ctrl_c_during_ravel_training_keeps_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("run.safetensors");
    let ckpt = dir.path().join("run.ckpt");
    let mut args = ravel_args(save.to_str().unwrap(), "32", "400");
    args.extend(["--checkpoint", ckpt.to_str().unwrap(), "--batch", "8"]);
    let stopped = interrupt_in(&args, "step 20/", Duration::from_millis(300));
    stopped.check("run.ckpt", "scoring the");
    assert!(stopped.stderr.contains("to resume"), "{}", stopped.stderr);
    assert_eq!(files_in(dir.path()), vec!["run.ckpt".to_string()]);
}

/// `subspace ravel-probe` while probing (9 minutes at its defaults): no probe file.
#[test]
fn ctrl_c_while_probing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("probe.json");
    let args = ["ravel-probe", "--out", out.to_str().unwrap()];
    let stopped = interrupt_in(&args, "screening", Duration::from_millis(700));
    stopped.check("interrupted while probing", "country template 2");
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}

/// `subspace ravel-score` while scoring a saved run.
#[test]
fn ctrl_c_while_rescoring_a_saved_run() {
    let run = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/results/ravel_das_layer15_dims16.safetensors");
    let args = ["ravel-score", run.to_str().unwrap(), "--split", "test"];
    let stopped = interrupt_in(&args, "scoring test", Duration::from_millis(700));
    stopped.check("stopped on request", "Cause");
}

/// `subspace bench` in its slowest part, the RAVEL recipe's pass before training.
#[test]
fn ctrl_c_during_the_bench() {
    let stopped = interrupt_in(
        &["bench", "--repeats", "2"],
        "the RAVEL recipe's pass before training",
        Duration::from_millis(300),
    );
    stopped.check("stopped on request", "training steps");
}

/// `subspace das` during training, no checkpoint asked for: no `--save` file.
#[test]
fn ctrl_c_during_das_training() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("paris.safetensors");
    let args = [
        "das",
        "--base",
        "The city of Paris is in the country of",
        "--source",
        "The city of Rio is in the country of",
        "--target",
        " Brazil",
        "--layer",
        "9",
        "--position",
        "3",
        "--dims",
        "1",
        "--steps",
        "400",
        "--save",
        save.to_str().unwrap(),
    ];
    let stopped = interrupt_in(&args, "step 20/", Duration::from_millis(200));
    stopped.check("nothing was saved", "step 400/");
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}
