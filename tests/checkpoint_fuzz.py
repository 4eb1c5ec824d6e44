"""Seeded mutations of real checkpoints, loaded one by one (run in a subprocess by test_checkpoint_fuzz).

``python -m tests.checkpoint_fuzz LAYOUT SEED COUNT FOLDER`` builds a small random EDVR checkpoint in
LAYOUT (``basicsr`` and ``mmagic``: torch's zip format; ``original``: the legacy format the original
EDVR repository's files use), truncates it at every structural boundary, then for case i of COUNT
applies a mutation with ``rng = random.Random(f"{SEED}-{i}")``, and calls ``load_model`` on each. Per case it prints one JSON line:
the mutation, the outcome (``error``: CheckpointError; ``same``: the original weights; ``values``: the
original keys and shapes with other values; ``other``: anything else, with the exception type), the
seconds it took and the process's peak RSS. A ``start`` line comes first, so a crash names its case.
Memory is capped (RLIMIT_DATA: 1 GiB above what the process maps at the start), so an attempt at a multi-GB allocation fails.
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import random
import resource
import struct
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from edvr_vs.checkpoint import CheckpointError, load_model
from edvr_vs.nn.edvr import EDVR
from tests.conftest import randomize
from tests.test_checkpoint import to_mmagic, to_original

Mutation = Callable[[bytes, random.Random], tuple[str, bytes]]


def base_checkpoint(layout: str) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A small EDVR in ``layout``, as file bytes, and its weights (BasicSR names)."""
    model = randomize(EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1, num_frame=3), seed=5)
    state = model.state_dict()
    buf = io.BytesIO()
    if layout == "basicsr":
        torch.save({"params": state}, buf)
    elif layout == "mmagic":
        torch.save(to_mmagic(state), buf)
    else:
        torch.save(to_original(state), buf, _use_new_zipfile_serialization=False)
    return buf.getvalue(), state


# ---- structure -------------------------------------------------------------------------------------

def zip_boundaries(data: bytes) -> list[int]:
    """Offsets where the zip's records start and end: every signature (local headers, central
    directory entries, the end records), each member's name, data start and data end."""
    out = set()
    for signature in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"):
        pos = data.find(signature)
        while pos != -1:
            out.add(pos)
            pos = data.find(signature, pos + 4)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            start = info.header_offset
            name_len, extra_len = struct.unpack("<HH", data[start + 26:start + 30])
            body = start + 30 + name_len + extra_len
            out |= {start + 30, start + 30 + name_len, body, body + info.compress_size}
    return sorted(o for o in out if 0 < o < len(data))


def pickle_ends(data: bytes, count: int = 5) -> list[int]:
    """Where each of the legacy format's first ``count`` pickles (magic number, protocol, system info,
    the object, the storage keys) ends."""
    ends, pos = [], 0
    for _ in range(count):
        for op, _, at in pickletools.genops(io.BytesIO(data[pos:])):
            if op.name == "STOP":
                pos += at + 1
                break
        ends.append(pos)
    return ends


def legacy_boundaries(data: bytes) -> list[int]:
    """Offsets where the legacy format's pickles end, and each storage's size field and data start
    and end."""
    out = pickle_ends(data)
    f = io.BytesIO(data)
    f.seek(out[-1])
    while f.tell() < len(data):
        (count,) = struct.unpack("<q", f.read(8))
        out.append(f.tell())
        end = f.tell() + count * 4  # float32 storages
        if end > len(data):
            break
        f.seek(end)
        out.append(end)
    return [o for o in out if 0 < o < len(data)]


def storage_size_fields(data: bytes) -> list[int]:
    """Offsets of the legacy format's per-storage element counts."""
    f = io.BytesIO(data)
    f.seek(pickle_ends(data)[-1])
    out = []
    while f.tell() + 8 <= len(data):
        out.append(f.tell())
        (count,) = struct.unpack("<q", f.read(8))
        f.seek(f.tell() + count * 4)
    return out


def rezip(data: bytes, replace: dict[str, bytes]) -> bytes:
    """The zip with some members' contents replaced (stored, as torch writes them)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for info in src.infolist():
            name = info.filename
            z.writestr(name, next((v for k, v in replace.items() if name.endswith(k)), src.read(name)))
    return out.getvalue()


# ---- hostile pickles ---------------------------------------------------------------------------------

def _pickle_call(module: str, name: str, args: tuple = ()) -> bytes:
    body = pickle.dumps(args, protocol=2)[2:-1]  # the args tuple's opcodes, without PROTO and STOP
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + body + b"R."


HOSTILE_GLOBALS = [("os", "system", ("echo pwned",)), ("builtins", "eval", ("1+1",)),
                   ("subprocess", "Popen", (["true"],)), ("torch", "load", ("/etc/passwd",)),
                   ("builtins", "getattr", ("x", "y")), ("posix", "system", ("true",)),
                   ("torch._utils", "_rebuild_tensor_v2", (1, 2, 3)), ("collections", "OrderedDict", ("x",)),
                   ("numpy.core.multiarray", "_reconstruct", ()), ("__builtin__", "exec", ("x=1",))]


def nested_pickle(rng: random.Random) -> tuple[str, bytes]:
    """Lists, tuples or dicts nested ``depth`` deep: MARK … LIST / TUPLE / DICT, innermost first."""
    depth = rng.choice([1000, 10_000, 100_000])
    kind = rng.choice(["list", "tuple", "dict"])
    if kind == "dict":  # {1: {1: … {}}}
        body = b"(K\x01" * depth + b"}" + b"d" * depth
    else:
        body = b"(" * depth + (b"l" if kind == "list" else b"t") * depth
    return f"nested {kind} x{depth}", b"\x80\x02" + body + b"."


def wide_pickle(rng: random.Random) -> tuple[str, bytes]:
    n = rng.choice([10_000, 1_000_000])
    return f"wide list x{n}", b"\x80\x02](" + b"K\x01" * n + b"e."


# ---- mutations ---------------------------------------------------------------------------------------

def storage_data(data: bytes) -> list[tuple[int, int]]:
    """[start, end) of each storage's raw data in a legacy-format file."""
    out = []
    for field in storage_size_fields(data):
        (count,) = struct.unpack("<q", data[field:field + 8])
        out.append((field + 8, field + 8 + count * 4))
    return out


def mutations(layout: str, data: bytes) -> list[tuple[str, Mutation]]:
    is_zip = layout != "original"
    bounds = zip_boundaries(data) if is_zip else legacy_boundaries(data)
    regions = [] if is_zip else storage_data(data)

    def in_data(pos: int) -> bool:  # a legacy file's raw tensor bytes (the format has no checksum)
        return any(a <= pos < b for a, b in regions)
    pkl_member = "data.pkl"

    def flip(d: bytes, rng: random.Random) -> tuple[str, bytes]:
        b = bytearray(d)
        bits = [(rng.randrange(len(b)), rng.randrange(8)) for _ in range(rng.randint(1, 8))]
        for pos, bit in bits:
            b[pos] ^= 1 << bit
        return f"flip {bits}{' in tensor data' if all(in_data(p) for p, _ in bits) else ''}", bytes(b)

    def truncate(d: bytes, rng: random.Random) -> tuple[str, bytes]:
        at = max(1, rng.choice(bounds) + rng.choice([-1, 0, 1]))
        return f"truncate at {at} of {len(d)}", d[:at]

    def directory(d: bytes, rng: random.Random) -> tuple[str, bytes]:
        b = bytearray(d)
        cd, end = d.find(b"PK\x01\x02"), d.rfind(b"PK\x05\x06")
        how = rng.choice(["noise", "zero entry", "offset", "count", "drop end"])
        if how == "noise":
            for _ in range(rng.randint(1, 16)):
                b[rng.randrange(cd, len(b))] = rng.randrange(256)
        elif how == "zero entry":
            b[cd:cd + 46] = bytes(46)
        elif how == "offset":  # the end record's central-directory offset
            b[end + 16:end + 20] = struct.pack("<I", rng.choice([0, 1, len(d), 0xFFFFFFFF, cd + 7]))
        elif how == "count":
            b[end + 8:end + 12] = struct.pack("<HH", *(rng.choice([0, 1, 0xFFFF]),) * 2)
        else:
            del b[end:]
        return f"directory {how}", bytes(b)

    def sizes(d: bytes, rng: random.Random) -> tuple[str, bytes]:
        b = bytearray(d)
        value = rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 2**31 + 12345])
        if is_zip:  # a local header's or a central-directory entry's sizes
            heads = [i for i in range(len(d) - 4) if d[i:i + 4] in (b"PK\x03\x04", b"PK\x01\x02")]
            head = rng.choice(heads)
            field = head + (18 if d[head:head + 4] == b"PK\x03\x04" else 20) + rng.choice([0, 4])
            b[field:field + 4] = struct.pack("<I", value)
            return f"zip size {value} at {field}", bytes(b)
        count = rng.choice([2**31, 2**40, 2**62, -1, 10**9])
        field = rng.choice(storage_size_fields(d))
        b[field:field + 8] = struct.pack("<q", count)
        return f"storage size {count} at {field}", bytes(b)

    def hostile(d: bytes, rng: random.Random) -> tuple[str, bytes]:
        module, name, args = rng.choice(HOSTILE_GLOBALS)
        payload = _pickle_call(module, name, args)
        return f"global {module}.{name}", (rezip(d, {pkl_member: payload}) if is_zip else
                                          _legacy_with_object(d, payload))

    def deep(d: bytes, rng: random.Random) -> tuple[str, bytes]:
        what, payload = rng.choice([nested_pickle, wide_pickle])(rng)
        return what, rezip(d, {pkl_member: payload}) if is_zip else _legacy_with_object(d, payload)

    kinds: list[tuple[str, Mutation]] = [("flip", flip), ("truncate", truncate), ("sizes", sizes),
                                         ("hostile", hostile), ("deep", deep)]
    if is_zip:
        kinds.append(("directory", directory))
    return kinds


def _legacy_with_object(data: bytes, payload: bytes) -> bytes:
    """The legacy file with its object pickle (the 4th) replaced by ``payload``."""
    ends = pickle_ends(data)
    return data[:ends[2]] + payload + data[ends[3]:]


def outcome(path: Path, state: dict[str, torch.Tensor]) -> dict[str, object]:
    try:
        model = load_model(path)
    except CheckpointError:
        return {"outcome": "error"}
    except BaseException as e:  # noqa: BLE001 - anything but CheckpointError is what we look for
        return {"outcome": "other", "type": type(e).__name__, "message": str(e)[:300]}
    got = model.state_dict()
    if set(got) != set(state) or any(got[k].shape != v.shape for k, v in state.items()):
        return {"outcome": "other", "type": "wrong weights", "message": "keys or shapes differ"}
    same = all(torch.equal(got[k], v.float()) for k, v in state.items())
    return {"outcome": "same" if same else "values"}


def cases(layout: str, data: bytes, seed: str, count: int) -> Iterator[tuple[int, str, str, bytes]]:
    """(case, kind, what, file bytes): first a truncation at every structural boundary, then ``count``
    seeded mutations, the kinds in turn."""
    bounds = zip_boundaries(data) if layout != "original" else legacy_boundaries(data)
    for i, at in enumerate(bounds):
        yield i, "boundary", f"truncate at boundary {at} of {len(data)}", data[:at]
    kinds = mutations(layout, data)
    for i in range(count):
        kind, mutate = kinds[i % len(kinds)]
        what, mutated = mutate(data, random.Random(f"{seed}-{i}"))
        yield len(bounds) + i, kind, what, mutated


def main() -> int:
    layout, seed, count, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    data, state = base_checkpoint(layout)
    with open("/proc/self/status") as f:  # RLIMIT_DATA counts private writable mappings: VmData
        data_now = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))
    resource.setrlimit(resource.RLIMIT_DATA, (data_now + (1 << 30), resource.getrlimit(resource.RLIMIT_DATA)[1]))
    path = folder / f"{layout}.pth"
    for i, kind, what, mutated in cases(layout, data, seed, count):
        path.write_bytes(mutated)
        print(json.dumps({"start": i, "kind": kind}), flush=True)
        t0 = time.perf_counter()
        result = outcome(path, state)
        print(json.dumps({"case": i, "kind": kind, "what": what[:200], **result,
                          "seconds": round(time.perf_counter() - t0, 3),
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
