"""rknn-toolkit2 from edgeasr's side: its environment, a build run, and the simulator as a session.

The toolkit lives in its own virtualenv (its pins clash with edgeasr's torch, numpy and onnx) and is
only ever run as a program: `worker.py` under the toolkit's Python. Create the environment once:

    python -m edgeasr.rknn.toolkit create-env            # .venv-rknn, about 5.6 GB (torch 2.4 CUDA build)
    python -m edgeasr.rknn.toolkit create-env /opt/rknn  # elsewhere; then EDGEASR_RKNN_PYTHON=/opt/rknn/bin/python

The stages find it through `rknn.toolkit_python`, else $EDGEASR_RKNN_PYTHON, else .venv-rknn/bin/python.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..cli import run_stage
from ..errors import EdgeAsrError
from .worker import read_arrays, write_arrays

# NOTE: rknn-toolkit2 imports pkg_resources (gone from setuptools 70) and torch when RKNN() is
# created, so a --no-deps install fails; its own pins (torch <= 2.4.0, numpy <= 1.26.4, onnx <= 1.18.0,
# protobuf <= 4.25.4) pull the rest.
TOOLKIT_REQUIREMENTS = ("rknn-toolkit2==2.5.0", "setuptools<70")
DEFAULT_ENV = Path(".venv-rknn")
ENV_VARIABLE = "EDGEASR_RKNN_PYTHON"
WORKER = Path(__file__).with_name("worker.py")
CREATE_COMMAND = "python -m edgeasr.rknn.toolkit create-env"
EXIT_TIMEOUT_S = 60  # how long a simulator may take to release its models and exit once its input ends


def create_env(path: Path) -> Path:
    """A virtualenv at `path` with the pinned toolkit; returns its Python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", *TOOLKIT_REQUIREMENTS], check=True)
    return python


def find_python(configured: Optional[str]) -> Path:
    """The toolkit environment's Python: the param, else $EDGEASR_RKNN_PYTHON, else .venv-rknn."""
    source = "rknn.toolkit_python" if configured else (ENV_VARIABLE if os.environ.get(ENV_VARIABLE) else "default")
    python = Path(configured or os.environ.get(ENV_VARIABLE) or DEFAULT_ENV / "bin" / "python")
    if not python.is_file():
        raise EdgeAsrError(f"rknn-toolkit2's Python not found at {python} ({source}): create its environment with "
                           f"`{CREATE_COMMAND}` (about 5.6 GB) or point rknn.toolkit_python / ${ENV_VARIABLE} at one")
    return python.absolute()  # not resolve(): a venv's python is a symlink that must keep its venv path


def available(configured: Optional[str] = None) -> bool:
    try:
        find_python(configured)
    except EdgeAsrError:
        return False
    return True


def rknn_config(rknn: Mapping[str, Any]) -> Dict[str, Any]:
    """rknn.config() keyword arguments from the `rknn` section."""
    return {
        "target_platform": rknn["name"],
        "quantized_dtype": rknn["quantized_dtype"],
        "quantized_algorithm": rknn["quantized_algorithm"],
        "quantized_method": rknn["quantized_method"],
        "optimization_level": int(rknn["optimization_level"]),
    }


def _tail(log: Path) -> str:
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(empty log)"


def run_worker(python: Path, command: str, job: Dict[str, Any], job_path: Path, log: Path) -> str:
    """Run `worker.py COMMAND` (build | tensors) on `job` (written to job_path; its paths absolute);
    the toolkit's output goes to `log`, whose text is returned. A failure stops with the log's last line."""
    job_path.write_text(json.dumps(job, indent=2) + "\n", encoding="utf-8")
    # NOTE: the toolkit writes check*.onnx and hybrid quantization's step-1 files into its working
    # directory: a scratch one.
    with open(log, "w", encoding="utf-8") as out, tempfile.TemporaryDirectory(prefix="edgeasr-rknn-") as scratch:
        try:
            subprocess.run([str(python), str(WORKER), command, str(job_path.resolve())], stdout=out,
                           stderr=subprocess.STDOUT, check=True, cwd=scratch)
        except subprocess.CalledProcessError as exc:
            raise EdgeAsrError(f"{log}: rknn-toolkit2 {command} exited {exc.returncode}: {_tail(log)}") from None
    return log.read_text(encoding="utf-8", errors="replace")


class SimulatorSession:
    """One model of a running simulator, with the part of onnxruntime's session API the X3 backend
    uses: run(None, feeds) -> outputs in the graph's order."""

    def __init__(self, simulator: "Simulator", name: str, input_names: Sequence[str]):
        self.simulator, self.name, self.input_names = simulator, name, list(input_names)

    def run(self, output_names: Optional[Sequence[str]], feeds: Mapping[str, np.ndarray]) -> List[np.ndarray]:
        if output_names is not None:
            raise ValueError("the simulator returns every output: pass None")
        return self.simulator.infer(self.name, [feeds[n] for n in self.input_names])


class Simulator:
    """`worker.py serve`: rknn-toolkit2's x86 simulator running the job's models, as a context manager.
    Starting it rebuilds every model (the simulator runs only a model built in the same session)."""

    def __init__(self, python: Path, job: Dict[str, Any], job_path: Path, log: Path):
        """job: its paths absolute (the toolkit runs in a scratch working directory)."""
        job_path.write_text(json.dumps(job, indent=2) + "\n", encoding="utf-8")
        self.log_path = log
        self._log = open(log, "w", encoding="utf-8")
        self._scratch = tempfile.TemporaryDirectory(prefix="edgeasr-rknn-")
        self._process = subprocess.Popen([str(python), str(WORKER), "serve", str(job_path.resolve())],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                         cwd=self._scratch.name)
        line = self._process.stdout.readline()
        if not line:
            self._exited()
        self.ready: Dict[str, Any] = json.loads(line)

    def _exited(self) -> None:
        code = self._process.wait()
        self._log.flush()
        raise EdgeAsrError(f"{self.log_path}: rknn-toolkit2 simulator exited {code}: {_tail(self.log_path)}")

    def infer(self, name: str, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        write_arrays(self._process.stdin, inputs, model=name)
        message = read_arrays(self._process.stdout)
        if message is None:
            self._exited()
        return message[1]

    def session(self, name: str, input_names: Sequence[str]) -> SimulatorSession:
        return SimulatorSession(self, name, input_names)

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._process.stdin.close()  # the end of its requests: it releases its models and exits
        try:
            self._process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            # NOTE: bounded: a simulator that does not exit must not hold the stage (or a test run) forever.
            self._process.kill()
            self._process.wait()
            self._log.write(f"edgeasr: the simulator did not exit {EXIT_TIMEOUT_S} s after its last request: "
                            "killed\n")
        self._log.close()
        self._scratch.cleanup()


def main(argv: List[str]) -> None:
    if not argv or argv[0] != "create-env" or len(argv) > 2:
        raise EdgeAsrError(f"usage: {CREATE_COMMAND} [PATH]  (default {DEFAULT_ENV})")
    python = create_env(Path(argv[1]) if len(argv) == 2 else DEFAULT_ENV)
    print(f"rknn-toolkit2 installed: {python}")


if __name__ == "__main__":
    run_stage(main)
