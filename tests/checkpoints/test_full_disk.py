"""A checkpoint folder on a disk that fills up (a tmpfs mounted here with room for two
checkpoints of a tiny random Llama): the third save fails with the file and "No space left on
device" in the message, the job exits 1 (it crashed with a segfault inside HDF5's clean-up
before: exit 139), no temporary file is left behind, the newest checkpoint left is the last good
one and verifies, and resuming from it elsewhere ends bitwise where an uninterrupted run ends.
An output folder that fills up: the adapter write fails naming ENOSPC and leaves the earlier
file whole (outputs are written to a temporary name and renamed). Needs root (mount); reported
Skipped where mounting is not allowed."""
import json
import shutil
import subprocess
import unittest

import h5py
import numpy as np

from tiny_llama import PROMPTS, make_tiny_llama
import tlm_testing
from tlm_testing import SOURCE_DIR, binary, run, tmpdir

STREAM = PROMPTS + ["How much water does maize need?", "What is a bond coupon?"]  # 12 prompts


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) and
                     n.startswith(("adapter/", "optimizer/")) else None)
    return out


class FullDisk(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tmpdir("tlm-full-disk-")
        cls.mount = cls.work / "small"
        cls.mount.mkdir()
        probe = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(cls.mount)],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            raise unittest.SkipTest(f"cannot mount a tmpfs here (needs root): {probe.stderr.strip()}")
        subprocess.run(["umount", str(cls.mount)], check=True)
        cls.model_dir = cls.work / "model"
        make_tiny_llama(cls.model_dir)
        cls.data = cls.work / "stream.jsonl"
        cls.data.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in STREAM))
        cls.full = cls.work / "full"
        run(cls.cmd(cls.full, cls.full / "ckpt"))

    @classmethod
    def cmd(cls, out, ckpt, *extra):
        return [binary("launch/tlm"), "adapt", "--config", SOURCE_DIR / "configs" / "tlm-online.yaml", "--model",
                cls.model_dir, "--data", cls.data, "--output-dir", out, "--chat-template", "chatml", "--cutoff-len", 0,
                "--lr", "1e-3", "--threshold", 0, "--stream-batch", 4, "--max-new-tokens", 3, "--answer-nll", "false",
                "--threads", 1, "--checkpoint-dir", ckpt, "--checkpoint-every-steps", 1, "--keep-last", 0,
                "--device", "cpu", *extra]

    def test_full_disk_fails_cleanly_and_the_last_good_checkpoint_resumes(self):
        size = (self.full / "ckpt" / "step-2.h5").stat().st_size
        room = (2 * size + size // 2 + 4095) // 4096 * 4096  # two checkpoints fit, a third does not
        self.mount_tmpfs(room)
        try:
            out = self.work / "run"
            proc = subprocess.run([str(c) for c in self.cmd(out, self.mount / "ck")], capture_output=True, text=True)
            self.assertEqual(proc.returncode, 1, proc.stderr[-3000:])
            self.assertIn("No space left on device", proc.stderr)
            self.assertRegex(proc.stderr, r"\.step-3\.h5\.tmp\.\d+: cannot write the checkpoint")
            left = sorted(p.name for p in (self.mount / "ck").iterdir())
            self.assertEqual(left, ["step-1.h5", "step-2.h5"], "the failed save must leave nothing behind")
            run([binary("launch/tlm-ckpt"), "verify", self.mount / "ck" / "step-2.h5"])
            ckpt = self.work / "ck-moved"
            shutil.copytree(self.mount / "ck", ckpt)
        finally:
            subprocess.run(["umount", str(self.mount)], check=True)
        proc = run(self.cmd(out, ckpt, "--resume", "latest"))
        self.assertIn("resumed from", proc.stderr)
        want, got = datasets(self.full / "ckpt" / "step-12.h5"), datasets(ckpt / "step-12.h5")
        self.assertEqual(sorted(want), sorted(got))
        for name in want:
            self.assertTrue(np.array_equal(want[name], got[name]), f"{name} differs after resuming")
        print(f"[full disk] {room} bytes of room, checkpoints of {size} bytes: the third save failed with "
              f"ENOSPC, exit 1, no temporary file left; resumed from step 2 elsewhere: {len(want)} tensors "
              f"bitwise equal to the uninterrupted run", flush=True)

    def test_outputs_on_a_full_disk_are_whole_or_absent(self):
        # Issue 14: an output folder that filled up left a truncated adapter_model.safetensors.
        # Now every whole-file output goes to a temporary name and is renamed when complete: the
        # failed write names the file and ENOSPC, and the file already there stays as it was.
        self.mount_tmpfs(64 * 1024)  # 16 pages
        try:
            out = self.mount / "run"
            (out / "adapter").mkdir(parents=True)
            old = out / "adapter" / "adapter_model.safetensors"
            old.write_bytes(b"an adapter of an earlier run")  # 1 page
            # 13 pages of filler: 2 left for predictions.jsonl and metrics.jsonl (under 4 KiB
            # each), none for the 15 KiB adapter.
            (self.mount / "filler").write_bytes(b"\0" * 13 * 4096)
            cmd = [str(c) for c in self.cmd(out, "unused")]
            i = cmd.index("--checkpoint-dir")
            del cmd[i:i + 6]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            self.assertEqual(proc.returncode, 1, proc.stderr[-3000:])
            self.assertIn(f"{old}: writing failed: No space left on device (nothing written; an older file stays "
                          "as it was)", proc.stderr)
            self.assertEqual(old.read_bytes(), b"an adapter of an earlier run")
            self.assertEqual(sorted(p.name for p in (out / "adapter").iterdir()), ["adapter_model.safetensors"])
        finally:
            subprocess.run(["umount", str(self.mount)], check=True)
        print("[full disk] output folder full at the adapter: ENOSPC named, the earlier adapter file intact, no "
              "temporary left", flush=True)

    def mount_tmpfs(self, size):
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.mount)], check=True)


if __name__ == "__main__":
    tlm_testing.main()
