//! The `subspace` command line: top-k next tokens, patching, DAS training, benchmarks.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

#[derive(Parser)]
#[command(
    name = "subspace",
    version,
    about = "Find where a language model stores a concept, and edit exactly that"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The k most likely next tokens after a prompt.
    Topk(commands::topk::Args),
    /// Patch one site of a base prompt from a source prompt; show top-k before and after.
    Patch(commands::patch::Args),
    /// Attribution patching: every layer's and position's estimated patching effect at once.
    Attribute(commands::attribute::Args),
    /// Greedy continuation of a prompt, optionally with a patch held in the cache.
    Generate(commands::generate::Args),
    /// Train a rotated subspace with Distributed Alignment Search.
    Das(commands::das::Args),
    /// Time loading, forward passes and training steps (see BENCHMARKS.md).
    Bench(commands::bench::Args),
    /// Find the RAVEL prompts the model answers right (writes data/results/).
    RavelProbe(commands::ravel::ProbeArgs),
    /// RAVEL's Cause / Isolate / Disentangle for one method at one layer.
    Ravel(commands::ravel::Args),
    /// Score a run saved by `subspace ravel --save` again (val and test by default).
    RavelScore(commands::ravel::ScoreArgs),
}

fn main() -> ExitCode {
    // The runtime's allocator policy, set before any other thread exists (a model's loading
    // sets it too, for notebooks and library users).
    kernels::allocator::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Topk(args) => commands::topk::run(args),
        Command::Patch(args) => commands::patch::run(args),
        Command::Attribute(args) => commands::attribute::run(args),
        Command::Das(args) => commands::das::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::RavelProbe(args) => commands::ravel::probe(args),
        Command::Ravel(args) => commands::ravel::run(args),
        Command::RavelScore(args) => commands::ravel::score(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let interrupted = e.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<subspace::SubspaceError>(),
                    Some(subspace::SubspaceError::Interrupted { .. })
                )
            });
            if interrupted {
                // One line: what was going on, what was kept and how to go on. 130: the
                // shell's code for a command stopped by Ctrl-C.
                eprintln!("{e:#}");
                return ExitCode::from(130);
            }
            // One line per cause, no backtrace: the message is for the user.
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
