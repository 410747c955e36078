"""Our half of the compatibility check, run by check-reference.sh with the
original Python DES on sys.path: `read DIR` reads every shard listed in
DIR/expect.json with the original's ShardReader and compares sha256;
`write DIR` writes shards with the original's ShardWriter and lists them."""

import hashlib
import json
import sys
from pathlib import Path

from des_core.compression import CompressionCodec, CompressionConfig
from des_core.config import DESConfig
from des_core.shard_io import ShardReader, ShardWriter

THRESHOLD = 4096


def read(dir_: Path) -> int:
    expect = json.loads((dir_ / "expect.json").read_text())
    config = DESConfig.from_env(big_file_threshold_bytes=THRESHOLD)
    bad = checked = 0
    for name, files in expect.items():
        with ShardReader.from_path(dir_ / name, config=config) as reader:
            if sorted(reader.list_uids()) != sorted(files):
                print(f"{name}: uids {sorted(reader.list_uids())} != {sorted(files)}")
                bad += 1
            for uid, sha in files.items():
                got = hashlib.sha256(reader.read_file(uid)).hexdigest()
                checked += 1
                if got != sha:
                    print(f"{name} {uid}: sha256 {got}, expected {sha}")
                    bad += 1
    print(f"reference reader: {checked} entries in {len(expect)} shards, {bad} mismatches")
    return 1 if bad else 0


def write(dir_: Path) -> int:
    config = DESConfig.from_env(big_file_threshold_bytes=THRESHOLD)
    expect = {}
    for codec in (CompressionCodec.NONE, CompressionCodec.ZSTD, CompressionCodec.LZ4):
        name = f"ref-{codec.value}.des"
        files = {}
        with ShardWriter(dir_ / name, compression=CompressionConfig(codec=codec), config=config,
                         bigfiles_dir=dir_ / "_bigFiles") as w:
            for i, size in enumerate([0, 10, 900, 3000, 5000]):
                data = (f"ref {codec.value} {i} " * (size // 8 + 1)).encode()[:size]
                w.add_file(f"r-{i}", data, {"i": i})
                files[f"r-{i}"] = hashlib.sha256(data).hexdigest()
        expect[name] = files
    (dir_ / "expect.json").write_text(json.dumps(expect))
    print(f"reference writer: {len(expect)} shards")
    return 0


if __name__ == "__main__":
    mode, target = sys.argv[1], Path(sys.argv[2])
    sys.exit(read(target) if mode == "read" else write(target))
