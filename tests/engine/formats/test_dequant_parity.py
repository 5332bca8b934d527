"""formats.dequant_parity: tlm's GGUF reader and dequantisers against gguf-py.

Writes GGUF files with random tensors of every type tlm dequantises (gguf.quants.quantize
where gguf-py can quantise, raw random blocks with sane fp16 scales for the K-quants and
for every bit pattern of the legacy quants), dequantises them with gguf_probe and requires
bitwise equality with gguf.quants.dequantize. Metadata of every value type is compared with
GGUFReader. Then the same on every tensor of the real default model.
"""
import json
import os
import pathlib
import shutil
import subprocess
import unittest

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

import tlm_testing as tt
import tlm_testing

PROBE = "tests/engine/formats/gguf_probe"

# Offsets of the fp16 scale fields inside each block, set to sane values so that random
# blocks decode to finite numbers (the rest of the block is random bits).
FP16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def random_blocks(rng, qtype, rows, row_values):
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n_blocks = rows * row_values // block_size
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in FP16_FIELDS[qtype]:
        scales = rng.uniform(-2.0, 2.0, size=n_blocks).astype(np.float16)
        # Exercise subnormal scales too.
        scales[::7] = rng.uniform(-6e-5, 6e-5, size=scales[::7].shape).astype(np.float16)
        raw[:, off:off + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(rows, row_values // block_size * type_size)


def probe(*args, **kw):
    return tt.run([tt.binary(PROBE), *args], **kw)


def read_f32(path):
    return np.fromfile(path, dtype=np.float32)


class BitwiseMixin:
    def assert_bitwise(self, ours, ref, what):
        ours = np.ascontiguousarray(ours, dtype=np.float32).reshape(-1)
        ref = np.ascontiguousarray(ref, dtype=np.float32).reshape(-1)
        self.assertEqual(ours.shape, ref.shape, f"{what}: shape")
        bad = ours.view(np.uint32) != ref.view(np.uint32)
        finite = np.isfinite(ref) & np.isfinite(ours)
        max_abs = float(np.abs(ours[finite].astype(np.float64) - ref[finite]).max(initial=0.0))
        print(f"[parity] {what}: {ref.size} values, {int(bad.sum())} bit mismatches, "
              f"max abs diff {max_abs:.3e}", flush=True)
        if bad.any():
            i = int(np.argmax(bad))
            self.fail(f"{what}: {int(bad.sum())} of {bad.size} values differ bitwise; first at "
                      f"{i}: ours {ours[i]!r} (0x{ours.view(np.uint32)[i]:08x}) vs ref "
                      f"{ref[i]!r} (0x{ref.view(np.uint32)[i]:08x})")


class GeneratedFileParity(BitwiseMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tt.tmpdir("tlm-formats-parity-")
        rng = np.random.default_rng(1234)
        cls.path = cls.tmp / "random.gguf"
        w = gguf.GGUFWriter(str(cls.path), arch="llama")
        # Metadata of every value type.
        w.add_uint8("m.u8", 250)
        w.add_int8("m.i8", -100)
        w.add_uint16("m.u16", 65000)
        w.add_int16("m.i16", -30000)
        w.add_uint32("m.u32", 4000000000)
        w.add_int32("m.i32", -2000000000)
        w.add_float32("m.f32", 0.1)
        w.add_uint64("m.u64", 2**62 + 3)
        w.add_int64("m.i64", -(2**62))
        w.add_float64("m.f64", 2.0 / 3.0)
        w.add_bool("m.bool", True)
        w.add_string("m.str", "héllo ☃ wörld")
        w.add_array("m.arr.str", ["a", "", "ünï", "<|im_start|>"])
        w.add_array("m.arr.i32", [1, -2, 3, 2**31 - 1])
        w.add_array("m.arr.f32", [0.5, -1.25, 3.4e38])
        w.add_array("m.arr.bool", [True, False, True])
        w.add_key_value("m.arr.u8", [0, 255, 7], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT8)
        w.add_key_value("m.arr.i16", [-32768, 32767], gguf.GGUFValueType.ARRAY,
                        gguf.GGUFValueType.INT16)
        w.add_key_value("m.arr.u64", [0, 2**63 - 1], gguf.GGUFValueType.ARRAY,
                        gguf.GGUFValueType.UINT64)
        w.add_key_value("m.arr.f64", [1e-310, -1e300], gguf.GGUFValueType.ARRAY,
                        gguf.GGUFValueType.FLOAT64)
        w.add_custom_alignment(64)

        cls.expected_types = {}
        data = rng.standard_normal((6, 512)).astype(np.float32)
        w.add_tensor("f32", data)
        # Every fp16 bit pattern: subnormals, +-0, inf, NaN payloads.
        w.add_tensor("f16", np.arange(65536, dtype=np.uint32).astype(np.uint16)
                     .view(np.float16).reshape(128, 512))
        bf16_bits = np.concatenate([np.arange(0, 65536, 7, dtype=np.uint32),
                                    [0x7f80, 0xff80, 0x7fc1, 0x0001, 0x8000]]).astype(np.uint16)
        bf16_bits = np.resize(bf16_bits, 32 * 300)
        w.add_tensor("bf16.raw", bf16_bits.view(np.uint8).reshape(32, 600), raw_dtype=T.BF16)
        w.add_tensor("bf16.quant", quantize(data, T.BF16), raw_dtype=T.BF16)
        for qt in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
            # A 3-D tensor: rows span two outer dimensions.
            x = (rng.standard_normal((2, 3, 256)) * rng.uniform(0.01, 10)).astype(np.float32)
            w.add_tensor(f"{qt.name}.quant", quantize(x, qt), raw_dtype=qt)
            w.add_tensor(f"{qt.name}.raw", random_blocks(rng, qt, 5, 128), raw_dtype=qt)
        for qt in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K):
            w.add_tensor(f"{qt.name}.raw", random_blocks(rng, qt, 7, 512), raw_dtype=qt)
            w.add_tensor(f"{qt.name}.one", random_blocks(rng, qt, 1, 256), raw_dtype=qt)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        cls.reader = gguf.GGUFReader(str(cls.path))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_every_tensor_bitwise(self):
        seen = set()
        for t in self.reader.tensors:
            out = self.tmp / "out.f32"
            probe("dump", self.path, t.name, out)
            ref = dequantize(t.data, t.tensor_type)
            self.assert_bitwise(read_f32(out), ref, f"{t.name} ({t.tensor_type.name})")
            seen.add(t.tensor_type)
        wanted = {T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
                  T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K}
        self.assertEqual(seen, wanted)

    def test_row_slices(self):
        rng = np.random.default_rng(7)
        for t in self.reader.tensors:
            ref = dequantize(t.data, t.tensor_type)
            row = int(t.shape[0])
            ref = ref.reshape(-1, row)
            rows = ref.shape[0]
            begin = int(rng.integers(0, rows))
            end = int(rng.integers(begin + 1, rows + 1))
            out = self.tmp / "slice.f32"
            probe("dump", self.path, t.name, out, begin, end)
            self.assert_bitwise(read_f32(out), ref[begin:end], f"{t.name} rows [{begin}, {end})")

    def test_metadata_matches_reader(self):
        compare_metadata(self, self.path, self.reader)

    def test_version_2(self):
        v2 = self.tmp / "v2.gguf"
        raw = bytearray(self.path.read_bytes())
        raw[4:8] = (2).to_bytes(4, "little")
        v2.write_bytes(raw)
        meta = json.loads(probe("meta", v2).stdout)
        self.assertEqual(meta["version"], 2)
        out = self.tmp / "v2.f32"
        t = self.reader.tensors[-1]
        probe("dump", v2, t.name, out)
        self.assert_bitwise(read_f32(out), dequantize(t.data, t.tensor_type), f"v2 {t.name}")

    def test_probe_rejects_truncated_file(self):
        cut = self.tmp / "cut.gguf"
        raw = self.path.read_bytes()
        cut.write_bytes(raw[: len(raw) - 100])
        proc = subprocess.run([tt.binary(PROBE), "meta", str(cut)], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn(str(cut), proc.stderr)
        self.assertIn("outside the file", proc.stderr)


def compare_metadata(tc, path, reader):
    meta = json.loads(probe("meta", path).stdout)
    tc.assertEqual(meta["version"], int(reader.fields["GGUF.version"].contents()))
    ours = meta["metadata"]
    n = 0
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        tc.assertIn(key, ours)
        ref = field.contents()
        got = ours[key]
        if field.types[0] == gguf.GGUFValueType.ARRAY and field.types[-1] == gguf.GGUFValueType.BOOL:
            ref = [int(b) for b in ref]
        tc.assertEqual(got, ref, f"metadata key {key}")
        tc.assertEqual(type(got) is float, isinstance(ref, float), key)
        n += 1
    tc.assertEqual(len(ours), n, "tlm holds keys GGUFReader does not")
    tensors = meta["tensors"]
    tc.assertEqual(len(tensors), len(reader.tensors))
    for got, t in zip(tensors, reader.tensors):
        tc.assertEqual(got["name"], t.name)
        tc.assertEqual(got["ne"], [int(d) for d in t.shape])
        tc.assertEqual(got["type"], t.tensor_type.name)
        tc.assertEqual(got["type_id"], int(t.tensor_type))
        tc.assertEqual(got["offset"], t.data_offset)
        tc.assertEqual(got["nbytes"], t.n_bytes)
        tc.assertEqual(got["torch_shape"], [int(d) for d in reversed(t.shape)])
    print(f"[parity] metadata of {path.name}: {n} keys and {len(tensors)} tensor infos equal "
          f"to GGUFReader", flush=True)


@unittest.skipUnless(tt.DEFAULT_MODEL and os.path.exists(tt.DEFAULT_MODEL),
                     "TLM_DEFAULT_MODEL not set")
class DefaultModelParity(BitwiseMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.path = pathlib.Path(tt.DEFAULT_MODEL)
        cls.reader = gguf.GGUFReader(str(cls.path))
        cls.tmp = tt.tmpdir("tlm-formats-model-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_every_tensor_bitwise(self):
        # The probe streams every tensor's floats in file order; compared one at a time.
        proc = subprocess.Popen([tt.binary(PROBE), "stream", str(self.path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        counts = {}
        total = 0
        mismatched = []
        try:
            for t in self.reader.tensors:
                ref = dequantize(t.data, t.tensor_type).reshape(-1)
                buf = proc.stdout.read(ref.size * 4)
                self.assertEqual(len(buf), ref.size * 4, f"{t.name}: short stream")
                ours = np.frombuffer(buf, dtype=np.float32)
                if not np.array_equal(ours.view(np.uint32), ref.view(np.uint32)):
                    mismatched.append(t.name)
                counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
                total += ref.size
            self.assertEqual(proc.stdout.read(1), b"", "probe wrote more values than expected")
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode()
            proc.stderr.close()
            rc = proc.wait()
        self.assertEqual(rc, 0, err)
        print(f"[parity] default model: {len(self.reader.tensors)} tensors ({counts}), {total} "
              f"values, {len(mismatched)} tensors with bit mismatches", flush=True)
        self.assertEqual(mismatched, [])
        for name in ("Q4_1", "Q8_0", "F32"):
            self.assertGreater(counts.get(name, 0), 0, f"model has no {name} tensor")

    def test_two_row_slices(self):
        by_type = {}
        for t in self.reader.tensors:
            by_type.setdefault(t.tensor_type.name, []).append(t)
        checked = 0
        for name, tensors in sorted(by_type.items()):
            picks = tensors[:3] + [tensors[-1]] if len(tensors) > 3 else tensors
            for t in picks:
                ref = dequantize(t.data, t.tensor_type).reshape(-1, int(t.shape[0]))
                rows = ref.shape[0]
                for begin in sorted({0, rows // 2, max(rows - 2, 0)}):
                    end = min(begin + 2, rows)
                    out = self.tmp / "rows.f32"
                    probe("dump", self.path, t.name, out, begin, end)
                    self.assert_bitwise(read_f32(out), ref[begin:end],
                                        f"{t.name} ({name}) rows [{begin}, {end})")
                    checked += 1
        self.assertGreater(checked, 10)

    def test_metadata_matches_reader(self):
        compare_metadata(self, self.path, self.reader)


if __name__ == "__main__":
    tlm_testing.main()
