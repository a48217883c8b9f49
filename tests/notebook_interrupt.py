"""Jupyter's stop button during a long subspace call, in the real Rust kernel (RELIABILITY.md,
"Stopping"; run by scripts/test.sh after the notebooks, so the kernel's build folder is warm).

evcxr 0.22 answers an interrupt by killing the process that runs the cells (its kernel.json asks
for interrupt_mode "message"; Rust code cannot be interrupted in place) and starting a new one:
the variables are lost, the cell ends with an error. What subspace must guarantee then, and what
this checks on a RAVEL run that would take minutes and save its result:
- the kernel is idle again within 2 s of the button (not busy until the run would have ended);
- nothing is half-written: no --save file, no temporary file beside it;
- the kernel answers the next cell (a fresh process), which can load the model again.

    .venv/bin/python tests/notebook_interrupt.py
"""

import os
import pathlib
import queue
import sys
import tempfile
import time

from jupyter_client.manager import start_new_kernel

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ["JUPYTER_PATH"] = str(ROOT / ".venv/share/jupyter")

SETUP = """:dep subspace = { path = "../crates/subspace" }
use subspace::LanguageModel;
use subspace::ravel::{self, Labels, Method, RavelData, RunConfig};
let lm = LanguageModel::load_default()?;
let data = RavelData::load(&RavelData::default_dir())?;
let labels = Labels::first_probe(None, &lm)?;
println!("ready");
"""

LONG_RUN = """let mut config = RunConfig::new(Method::Das, 15);
config.save = Some(std::path::PathBuf::from({save!r}));
eprintln!("started");
let result = ravel::run(&lm, &data, &labels, &config)?;
println!("{}", result.test.cause);
"""


def execute(kc, code, timeout, on_output=None):
    """Runs `code`, returns (status of the reply, text it printed); `on_output(text)` is called
    for each output as it arrives."""
    msg_id = kc.execute(code)
    printed = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no idle status in {timeout} s for: {code[:60]!r}")
        try:
            msg = kc.get_iopub_msg(timeout=left)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            printed.append(content["text"])
            if on_output:
                on_output(content["text"])
        elif kind == "error":
            printed.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=30)
    return reply["content"]["status"], "".join(printed)


def main():
    work = pathlib.Path(tempfile.mkdtemp())
    save = work / "run.safetensors"
    km, kc = start_new_kernel(kernel_name="rust", cwd=str(ROOT / "notebooks"), startup_timeout=120)
    try:
        status, out = execute(kc, SETUP, timeout=900)
        assert status == "ok" and "ready" in out, out

        started = []
        code = LONG_RUN.replace("{save!r}", '"' + str(save) + '"')
        msg_id = kc.execute(code)
        # Wait for the run to be under way (the pass before training), then press stop.
        deadline = time.monotonic() + 120
        while not started and time.monotonic() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                started.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise AssertionError(f"the long run failed: {msg['content']['evalue']}")
        assert started, "the long run never started"
        time.sleep(3)
        pressed = time.monotonic()
        km.interrupt_kernel()
        idle_after = None
        while time.monotonic() - pressed < 60:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if (
                msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
            ):
                idle_after = time.monotonic() - pressed
                break
        assert idle_after is not None, "the kernel stayed busy for a minute after the stop button"
        kc.get_shell_msg(timeout=30)
        print(f"stop button: kernel idle {idle_after:.2f} s later")
        assert idle_after < 2, f"kernel idle only {idle_after:.2f} s after the stop button"
        left = sorted(p.name for p in work.iterdir())
        assert left == [], f"files left by the stopped run: {left}"

        # The kernel goes on: a fresh process, which loads the model again.
        status, out = execute(
            kc,
            'let lm = subspace::LanguageModel::load_default()?;\n'
            'println!("{}", lm.predict(&lm.prompt("The city of Paris is in the country of")?)?.argmax().token);',
            timeout=300,
        )
        assert status == "ok" and "France" in out, (status, out)
        print("after the stop: the next cell ran (" + out.strip() + ")")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    sys.exit(main())
