"""The checkpoint file is plain HDF5: h5py reads every dataset and attribute, the tensors
equal what tlm wrote (bitwise), every dataset carries Fletcher32, the stats datasets are
extendable, and each tensor's crc32 attribute is zlib's crc32 of its bytes."""
import json
import unittest
import zlib

import h5py
import numpy as np

from tlm_testing import binary, run, tmpdir
import tlm_testing


class CheckpointReadByH5py(unittest.TestCase):
    def test_every_dataset_and_attribute(self):
        work = tmpdir("tlm-ckpt-h5py-")
        path, expected = work / "c.h5", work / "c.json"
        run([binary("tests/checkpoints/checkpoint_probe"), path, expected])
        want = json.loads(expected.read_text())
        with h5py.File(path, "r") as f:
            root = dict(f.attrs)
            self.assertEqual(root["format_version"], 1)
            for key in ("engine_version", "created_utc", "base_model_path", "base_config_hash",
                        "base_weights_hash", "method"):
                self.assertIsInstance(root[key], str, key)
            self.assertEqual(root["tp_at_save"], 2)
            self.assertEqual(root["dp_at_save"], 3)
            self.assertEqual(json.loads(root["method"]), {"lora": {"rank": 4}})
            seen = 0
            for name, values in want["adapter"].items():
                module, part = name.rsplit(".", 1)
                ds = f[f"adapter/{module}/{part}"]
                data = ds[()]
                self.assertEqual(data.dtype, np.float32)
                np.testing.assert_array_equal(data.reshape(-1), np.array(values, np.float32))
                self.assertTrue(ds.fletcher32)
                self.assertEqual(int(ds.attrs["crc32"]), zlib.crc32(data.tobytes()))
                for moment in ("exp_avg", "exp_avg_sq"):
                    m = f[f"optimizer/{module}/{part}.{moment}"]
                    self.assertTrue(m.fletcher32)
                    self.assertEqual(int(m.attrs["crc32"]), zlib.crc32(m[()].tobytes()))
                seen += 1
            self.assertEqual(seen, 4)
            self.assertEqual(f["optimizer"].attrs["step"], 4)
            state = dict(f["state"].attrs)
            self.assertEqual((state["global_step"], state["samples_consumed"], state["stream_offset"]), (9, 72, 72))
            self.assertEqual(state["stream_identity"], "prompts.jsonl")
            self.assertEqual(json.loads(state["scheduler_state"]), {"k": 4})
            loss = f["stats/loss"]
            self.assertEqual(loss.maxshape, (None,))
            self.assertTrue(loss.fletcher32)
            np.testing.assert_array_equal(loss[()], want["stats"]["loss"])
        print(f"[parity] h5py read {path.stat().st_size} bytes: 4 adapter tensors, 8 moments, stats, all attributes",
              flush=True)


if __name__ == "__main__":
    tlm_testing.main()
