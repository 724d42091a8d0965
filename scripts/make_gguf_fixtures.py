"""Write the GGUF test fixtures with the reference implementation (the `gguf` package of ggml/llama.cpp),
so the project's reader and dequantizers are checked against code no one here wrote.

    python3 -m venv /tmp/venv-gguf && /tmp/venv-gguf/bin/pip install gguf==0.19.0 numpy
    /tmp/venv-gguf/bin/python scripts/make_gguf_fixtures.py

Writes tests/fixtures/gguf/:
  all_types.gguf   GGUF v3: every metadata value type (incl. nested arrays), general.alignment 64, and one
                   2 x 512 tensor per supported ggml type with random block bytes (finite f16 scales)
  all_types.json   the metadata as the reference reads it, and per tensor: type, shape (HF order), byte
                   length, and the reference dequantization (gguf.quants.dequantize) of every element
Seeded: the output is the same on every run.
"""

import json
import pathlib

import numpy as np
import gguf
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gguf"
TYPES = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K, T.Q6_K]
ROWS, COLS = 2, 512


def f16_bytes(rng, n, lo=-0.05, hi=0.05):
    return rng.uniform(lo, hi, n).astype(np.float16).view(np.uint8)


def random_blocks(rng, t, n_blocks):
    """Random block bytes whose f16 fields hold small finite scales (random bits could be NaN/Inf)."""
    block, size = GGML_QUANT_SIZES[t]
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    # Offsets of the f16 fields of each block layout.
    f16_at = {T.Q8_0: [0], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2],
              T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}[t]
    for o in f16_at:
        raw[:, o:o + 2] = f16_bytes(rng, n_blocks).reshape(n_blocks, 2)
    return raw


def main():
    rng = np.random.default_rng(20261201)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "all_types.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.data_alignment = 64
    w.add_uint32("general.alignment", 64)
    meta = {
        "test.u8": ("uint8", 200), "test.i8": ("int8", -100), "test.u16": ("uint16", 60000),
        "test.i16": ("int16", -30000), "test.u32": ("uint32", 4000000000), "test.i32": ("int32", -2000000000),
        "test.f32": ("float32", 0.25), "test.bool": ("bool", True), "test.string": ("string", "héllo, 世界"),
        "test.u64": ("uint64", 2**53 + 1), "test.i64": ("int64", -(2**40)), "test.f64": ("float64", 1e-300),
    }
    for k, (kind, v) in meta.items():
        getattr(w, f"add_{kind}")(k, v)
    w.add_array("test.array_i32", [1, -2, 3])
    w.add_array("test.array_str", ["a", "", "ünïcode"])
    w.add_array("test.array_nested", [[1, 2], [3]])
    expected = {}
    for t in TYPES:
        name = f"t.{t.name.lower()}"
        n = ROWS * COLS
        if t in (T.F32, T.F16, T.BF16):
            x = rng.standard_normal(n).astype(np.float32)
            data = {T.F32: x, T.F16: x.astype(np.float16)}.get(t)
            if t == T.BF16:
                data = gguf.quants.quantize(x, T.BF16)
            raw = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
        else:
            block, _ = GGML_QUANT_SIZES[t]
            raw = random_blocks(rng, t, n // block).reshape(-1)
        if t in (T.F32, T.F16):
            w.add_tensor(name, data.reshape(ROWS, COLS), raw_dtype=t)
        else:  # bytes, (rows, bytes per row): the writer derives the element shape from the type
            w.add_tensor(name, raw.reshape(ROWS, -1), raw_dtype=t)
        deq = gguf.quants.dequantize(raw.reshape(ROWS, -1), t).reshape(-1).astype(np.float32)
        expected[name] = {
            "type": t.name,
            "shape": [ROWS, COLS],
            "byte_length": int(raw.nbytes),
            "values": [float(v) for v in deq],
        }
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    # What the reference reads back (values as JSON: u64 beyond 2^53 as a string).
    r = gguf.GGUFReader(str(path))
    read_meta = {}
    for k, f in r.fields.items():
        if not k.startswith("test.") and k not in ("general.alignment", "general.architecture"):
            continue
        v = f.contents()
        read_meta[k] = str(v) if isinstance(v, int) and abs(v) > 2**53 else v
    for t in r.tensors:
        e = expected[t.name]
        assert e["byte_length"] == int(t.n_bytes), (t.name, e["byte_length"], t.n_bytes)
        e["offset"] = int(t.data_offset)
    doc = {"version": 3, "alignment": 64, "metadata": read_meta, "tensors": expected,
           "gguf_package": gguf.__version__ if hasattr(gguf, "__version__") else "unknown"}
    (OUT / "all_types.json").write_text(json.dumps(doc) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes) and all_types.json")


if __name__ == "__main__":
    main()
