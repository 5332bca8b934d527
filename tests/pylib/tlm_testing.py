"""Shared helpers for tlm's Python parity tests (run by CTest with the venv's python).

The tests compare tlm's C++ binaries against the reference libraries. Every comparison
prints its figures (max abs / max rel difference) so that CTest logs carry the numbers.

Scripts end with `tlm_testing.main()`: it takes `--device cpu|cuda` off the command line
(DEVICE; the parity tests run once per device, CTest registers a `.cuda` variant labelled
gpu) and exits with SKIP_RETURN_CODE (77) when a test was skipped, so that CTest shows a
missing GPU or default model as "Skipped", never as "Passed".
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

BUILD_DIR = pathlib.Path(os.environ.get("TLM_BUILD_DIR", "build")).resolve()
SOURCE_DIR = pathlib.Path(os.environ.get("TLM_SOURCE_DIR", ".")).resolve()
DEFAULT_MODEL = os.environ.get("TLM_DEFAULT_MODEL", "")
SKIP_RETURN_CODE = 77


def _take_device(argv):
    if "--device" in argv:
        i = argv.index("--device")
        device = argv[i + 1]
        del argv[i:i + 2]
        return device
    return "cpu"


# The device the script's tlm side and reference side run on ("cpu" or "cuda").
DEVICE = _take_device(sys.argv)


def cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available() and torch.cuda.device_count() > 0
    except ImportError:
        return False


def require_device(testcase=None):
    """Skips (visibly) when DEVICE is cuda and no GPU is visible."""
    if DEVICE == "cuda" and not cuda_available():
        raise unittest.SkipTest("no CUDA GPU visible (torch.cuda.is_available() is False)")


def require_default_model():
    if not DEFAULT_MODEL or not os.path.exists(DEFAULT_MODEL):
        raise unittest.SkipTest(f"the default model is not installed (TLM_DEFAULT_MODEL={DEFAULT_MODEL!r})")


def main():
    """unittest.main that exits 77 (CTest: Skipped) when any test was skipped and none failed."""
    prog = unittest.main(verbosity=2, exit=False)
    result = prog.result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.skipped:
        for test, reason in result.skipped:
            print(f"[skipped] {test.id()}: {reason}", flush=True)
        sys.exit(SKIP_RETURN_CODE)
    sys.exit(0)


# mpirun for multi-rank tests on a small machine (as root, oversubscribed, unbound), and the
# environment its ranks need.
MPIRUN = [shutil.which("mpirun") or "mpirun", "--oversubscribe", "--bind-to", "none"]
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")


def binary(relpath: str) -> str:
    """Path of a built executable, relative to the build directory."""
    path = BUILD_DIR / relpath
    if not path.exists():
        raise FileNotFoundError(f"built binary not found: {path}")
    return str(path)


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    """Runs a command, raising with its stderr when it fails."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def tmpdir(prefix="tlm-test-") -> pathlib.Path:
    return pathlib.Path(tempfile.mkdtemp(prefix=prefix))


def diff_stats(ours, ref):
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        raise AssertionError(f"shape mismatch: ours {ours.shape} vs reference {ref.shape}")
    abs_diff = np.abs(ours - ref)
    rel_diff = abs_diff / np.maximum(np.abs(ref), 1e-30)
    return float(abs_diff.max(initial=0.0)), float(rel_diff.max(initial=0.0))


def assert_close(testcase, ours, ref, *, atol=0.0, rtol=0.0, what="values"):
    """|ours - ref| <= atol + rtol * |ref| elementwise; prints the max differences."""
    max_abs, max_rel = diff_stats(ours, ref)
    print(f"[parity] {what}: max abs diff {max_abs:.3e}, max rel diff {max_rel:.3e} "
          f"(tolerance atol={atol:g}, rtol={rtol:g})", flush=True)
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    bad = np.abs(ours - ref) > atol + rtol * np.abs(ref)
    if bad.any():
        idx = np.argwhere(bad)[0]
        testcase.fail(f"{what}: {int(bad.sum())} of {bad.size} elements out of tolerance; "
                      f"first at {tuple(idx)}: ours {ours[tuple(idx)]!r} vs ref {ref[tuple(idx)]!r}")


def write_json(path, obj):
    pathlib.Path(path).write_text(json.dumps(obj, ensure_ascii=False))
