"""formats.safetensors_parity: tlm's safetensors reader on files written by the
`safetensors` library (torch and numpy front ends), single-file and sharded the way
transformers saves them; tensor tables, metadata and raw bytes must match safe_open."""
import json
import shutil
import subprocess
import unittest

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

import tlm_testing as tt
import tlm_testing

PROBE = "tests/engine/formats/safetensors_probe"
DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
          torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
          torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def probe(*args):
    return tt.run([tt.binary(PROBE), *args])


def torch_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


class SafetensorsParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tt.tmpdir("tlm-formats-st-")
        g = torch.Generator().manual_seed(0)
        cls.tensors = {}
        for i, (dtype, name) in enumerate(DTYPES.items()):
            shape = [(3, 5), (7,), (2, 3, 4), (1,), (4, 1, 2)][i % 5]
            if dtype.is_floating_point:
                t = torch.randn(shape, generator=g).to(dtype)
            elif dtype == torch.bool:
                t = torch.randint(0, 2, shape, generator=g).bool()
            else:
                t = torch.randint(-100 if dtype != torch.uint8 else 0, 100, shape,
                                  generator=g).to(dtype)
            cls.tensors[f"model.layers.{i}.{name.lower()}"] = t
        cls.tensors["empty"] = torch.zeros((0, 4))
        cls.tensors["scalar"] = torch.tensor(3.5)
        cls.single = cls.tmp / "single.safetensors"
        save_torch(cls.tensors, str(cls.single), metadata={"format": "pt", "note": "ünï"})

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check_listing(self, listing, path_of):
        ours = {t["name"]: t for t in listing["tensors"]}
        self.assertEqual(sorted(ours), sorted(self.tensors))
        for name, ref in self.tensors.items():
            t = ours[name]
            self.assertEqual(t["dtype"], DTYPES[ref.dtype], name)
            self.assertEqual(t["shape"], list(ref.shape), name)
            self.assertEqual(t["end"] - t["begin"], ref.numel() * ref.element_size(), name)
            with safe_open(path_of(name), framework="pt") as f:
                self.assertTrue(torch.equal(f.get_tensor(name), ref), name)
            out = self.tmp / "t.bin"
            probe("dump", self.dump_target, name, out)
            self.assertEqual(out.read_bytes(), torch_bytes(ref), f"{name}: raw bytes")

    def test_single_file(self):
        listing = json.loads(probe("list", self.single).stdout)
        self.assertEqual(listing["metadata"], {"format": "pt", "note": "ünï"})
        with safe_open(str(self.single), framework="pt") as f:
            self.assertEqual(f.metadata(), listing["metadata"])
        self.dump_target = self.single
        self.check_listing(listing, lambda name: str(self.single))
        # Tensors are listed in data order without gaps, as the library lays them out.
        spans = [(t["begin"], t["end"]) for t in listing["tensors"]]
        self.assertEqual(spans, sorted(spans))
        print(f"[parity] {self.single.name}: {len(spans)} tensors equal to safe_open", flush=True)

    def test_sharded_directory(self):
        d = self.tmp / "sharded"
        d.mkdir()
        names = sorted(self.tensors)
        shards = {"model-00001-of-00002.safetensors": names[::2],
                  "model-00002-of-00002.safetensors": names[1::2]}
        weight_map = {}
        for shard, members in shards.items():
            save_torch({n: self.tensors[n] for n in members}, str(d / shard),
                       metadata={"format": "pt"})
            weight_map.update({n: shard for n in members})
        tt.write_json(d / "model.safetensors.index.json",
                      {"metadata": {"total_size": 0}, "weight_map": weight_map})
        listing = json.loads(probe("list", d).stdout)
        for t in listing["tensors"]:
            self.assertEqual(t["file"], str(d / weight_map[t["name"]]))
        self.dump_target = d
        self.check_listing(listing, lambda name: str(d / weight_map[name]))
        print(f"[parity] sharded directory: {len(listing['tensors'])} tensors over "
              f"{len(shards)} shards equal to safe_open", flush=True)

        # A shard the index names but that is absent.
        (d / "model-00002-of-00002.safetensors").unlink()
        proc = subprocess.run([tt.binary(PROBE), "list", str(d)], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("model.safetensors.index.json", proc.stderr)
        self.assertIn("model-00002-of-00002.safetensors", proc.stderr)

    def test_numpy_writer(self):
        path = self.tmp / "np.safetensors"
        arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4),
                  "b": np.array([1, -2], dtype=np.int64), "c": np.ones((2, 2), dtype=np.float16)}
        save_numpy(arrays, str(path))
        listing = json.loads(probe("list", path).stdout)
        ours = {t["name"]: t for t in listing["tensors"]}
        for name, ref in arrays.items():
            self.assertEqual(ours[name]["shape"], list(ref.shape))
            out = self.tmp / "n.bin"
            probe("dump", path, name, out)
            self.assertEqual(out.read_bytes(), ref.tobytes(), name)


if __name__ == "__main__":
    tlm_testing.main()
