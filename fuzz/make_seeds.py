#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/): a few small valid inputs
of each reader and the edge cases its code must refuse. Standard library only; the protobuf,
cache, row-file and npy bytes are encoded here by hand from their documented layouts.

    python3 fuzz/make_seeds.py   # rewrites its seeds in fuzz/corpus/; inputs kept from findings
                                 # (crash_*) are not its and stay
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("latin-1")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- protobuf wire encoding (proto3: varints, length-delimited, packed doubles) ----
def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def f_varint(field, v):
    return varint(field << 3) + varint(v)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode("latin-1")
    return varint(field << 3 | 2) + varint(len(b)) + b


def node(role, rank):
    return f_varint(1, role) + f_varint(2, rank)


def table(table_id, num_keys):
    return f_varint(1, table_id) + f_varint(2, num_keys)


def frames(*parts):
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)


def message_seeds():
    pull = f_varint(1, 1) + f_varint(2, 7) + f_bytes(3, node(3, 0)) + f_bytes(5, table(0, 2)) + f_varint(6, 3)
    put("fuzz_message", "pull_request", frames(pull, struct.pack("<2Q", 11, 12)))
    push = (f_varint(1, 2) + f_varint(2, 8) + f_bytes(3, node(3, 1)) + f_bytes(5, table(0, 1)) +
            f_bytes(5, table(1, 2)) + f_varint(6, 3) + f_varint(7, 1))
    put("fuzz_message", "push_request",
        frames(push, struct.pack("<3Q", 1, 2, 3), struct.pack("<10f", *range(10))))
    reply = f_varint(1, 1) + f_varint(4, 1) + f_bytes(5, table(3, 1)) + f_varint(7, 1)
    put("fuzz_message", "pull_reply", frames(reply, struct.pack("<16f", *range(16))))
    put("fuzz_message", "push_reply", frames(f_varint(1, 2) + f_varint(4, 1)))
    error = f_varint(1, 1) + f_varint(4, 1) + f_varint(9, 3) + f_bytes(10, "bad line \xe9\xff")
    put("fuzz_message", "error_reply_latin1", frames(error))
    unknown = f_varint(1, 2) + f_bytes(5, table(2, 1)) + f_varint(7, 1)
    put("fuzz_message", "push_unknown_table", frames(unknown, struct.pack("<Q", 5), b""))
    huge = f_varint(1, 2) + f_bytes(5, table(0, 1 << 40)) + f_bytes(5, table(1, (1 << 64) - 1)) + f_varint(7, 1)
    put("fuzz_message", "push_huge_counts", frames(huge, b"\0" * 8, b"\0" * 4))
    half = f_varint(1, 2) + f_bytes(5, table(1, 1)) + f_varint(7, 2)
    put("fuzz_message", "push_float16", frames(half, struct.pack("<Q", 5), b"\0\0"))
    register = f_bytes(1, node(3, 0)) + f_bytes(2, "tcp://127.0.0.1:5555") + f_bytes(3, "host") + f_varint(4, 77)
    put("fuzz_message", "register", frames(f_varint(1, 10), register))
    ranges = f_bytes(3, f_varint(1, 0) + f_varint(2, 8192) + f_varint(3, 0)) + \
        f_bytes(3, f_varint(1, 8192) + f_varint(2, 16384) + f_varint(3, 1))
    shard_map = f_varint(1, 1) + f_varint(2, 16384) + ranges
    info = f_varint(1, 2) + f_varint(2, 1) + f_bytes(3, shard_map) + \
        f_bytes(4, f_bytes(1, node(2, 0)) + f_bytes(2, "tcp://h:1") + f_bytes(3, "h"))
    put("fuzz_message", "cluster_info", frames(f_varint(1, 10) + f_varint(4, 1), info))
    overlap = f_varint(2, 16384) + f_bytes(3, f_varint(1, 0) + f_varint(2, 16384) + f_varint(3, 0)) + \
        f_bytes(3, f_varint(1, 5) + f_varint(2, 9) + f_varint(3, 40000))
    put("fuzz_message", "cluster_info_bad_map", frames(f_varint(1, 10), f_varint(1, 1) + f_bytes(3, overlap)))
    abort = f_bytes(1, node(3, 0)) + f_bytes(2, "worker:0 \xff\xfe\x00 data.txt:3") + f_varint(3, 3)
    put("fuzz_message", "abort_binary_reason", frames(f_varint(1, 15), abort))
    reduce = f_varint(1, 4) + f_bytes(2, struct.pack("<3d", 1.5, float("nan"), -2.0)) + f_varint(3, 1)
    put("fuzz_message", "reduce", frames(f_varint(1, 11), reduce))
    files = f_bytes(1, "server-0-shard-0-table-0.rows") + f_varint(2, 96) + f_varint(3, 1234) + f_varint(8, 1)
    checkpoint = f_varint(1, 5) + f_bytes(2, "/ck/step-5.tmp") + f_bytes(3, files) + f_varint(5, 1)
    put("fuzz_message", "checkpoint", frames(f_varint(1, 17), checkpoint))
    put("fuzz_message", "heartbeat_two_bodies", frames(f_varint(1, 18), f_varint(1, 9), b""))
    put("fuzz_message", "truncated_header", frames(f_varint(1, 1)[:1] + b"\x2a\x05"))


def ratings_seeds():
    put("fuzz_ratings", "tab", "\x00" + "1\t2\t5\t881250949\n196\t242\t3\t881250949\n")
    put("fuzz_ratings", "dat_two_parts", "\x22" + "1::1193::5::978300760\n1::661::3::978302109\n2::3::4.5::1\n")
    put("fuzz_ratings", "csv_header", "\x03" + "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1\n")
    put("fuzz_ratings", "libmf", "\x04" + "0 0 4\n0 3 -0.25\n7 1 1e-3\n")
    put("fuzz_ratings", "crlf_bom", "\x40" + "\xef\xbb\xbf1\t2\t3\r\n\r\n  \n4\t5\t1\r\n")
    put("fuzz_ratings", "cr_only", "\x20" + "1\t2\t3\r4\t5\t1\r")
    put("fuzz_ratings", "bad_latin1_skipped", "\x68" + "1\t2\t3\n\xe9\t2\t3\n1\t2\tnan\n1\t2\t3e38\n18446744073709551616\t1\t1\n")
    put("fuzz_ratings", "utf16", "\x00" + "\xff\xfe1\x00\t\x002\x00\t\x003\x00\n\x00")
    put("fuzz_ratings", "empty", "\x00")


def criteo_line(label, ints, cats):
    return "\t".join([label] + ints + cats) + "\n"


def ctr_text_seeds():
    ints = ["1", "", "5", "0", "1382", "4", "15", "2", "181", "1", "2", "", "2"]
    cats = ["68fd1e64", "80e26c9b", "fb936136", "7b4723c4", "25c83c98", "7e0ccccf", "de7995b8",
            "1f89b562", "a73ee510", "a8cd5504", "b2cb9c98", "37c9c164", "2824a5f6", "1adce6ef",
            "8ba8b39a", "891b62e7", "e5ba7672", "f54016b9", "21ddcdc9", "b1252a9d", "07b5194c",
            "", "3a171ecb", "c5c50484", "e8b83407", "9727dd16"]
    criteo = criteo_line("0", ints, cats) + criteo_line("1", ["-3"] + ints[1:], cats[:25] + [""])
    put("fuzz_ctr_text", "criteo", "\x01\x40" + criteo)
    put("fuzz_ctr_text", "criteo_auto_bucketize_parts", "\x38\x10" + criteo.replace("\n", "\r\n"))
    put("fuzz_ctr_text", "criteo_bad_label_skipped", "\x05\x08" + criteo_line("2", ints, cats) + criteo)
    put("fuzz_ctr_text", "libsvm_one_hot", "\x02\x20" + "1 3:1 7:0.5\n0 2:1 9:-1\n-1 4:2 5:1\n")
    put("fuzz_ctr_text", "libsvm_multi_hot_parts", "\x30\x03" + "1 3:1\n+1 2:1 9:1 11:0.25\n\n0\n")
    put("fuzz_ctr_text", "libffm", "\x03\x10" + "1 0:3:1 1:7:1\n0 0:2:1 1:9:0.5\n")
    put("fuzz_ctr_text", "libffm_bad_tokens_skipped_parts",
        "\x74\x00" + "1 0:3:1 1:7:inf\n0 0:2 1:9:0.5\n1.0 4294967296:1:1\n\xe9 0:1:1\n")
    put("fuzz_ctr_text", "empty", "\x00\x00")


def cache_header(source, num_dense, num_fields, multi_hot, keys, bucketize, seed, n):
    record = 4 + 4 * num_dense + 12 * keys
    h = b"TSRCACHE" + struct.pack("<8I", 1, 128, source, num_dense, num_fields, multi_hot, keys, bucketize)
    h += struct.pack("<3Q", seed, n, record)
    h += b"\0" * (120 - len(h))
    fnv = 0xcbf29ce484222325
    for b in h:
        fnv = ((fnv ^ b) * 0x100000001b3) & ((1 << 64) - 1)
    return h + struct.pack("<Q", fnv)


def ctr_cache_seeds():
    # Converted: byte 0 odd, no XORs; then a text file.
    put("fuzz_ctr_cache", "convert_libsvm", "\x01\x05" + "1 3:1 7:0.5\n0 2:1 9:-1\n")
    put("fuzz_ctr_cache", "convert_libsvm_multi_hot_skip", "\x11\x02" + "1 3:1\n0 2:1 9:1 11:0.25\nx\n0\n")
    put("fuzz_ctr_cache", "convert_libffm_seed1", "\x41\x81" + "1 0:3:1 1:7:1\n0 0:2:1 1:9:0.5\n")
    ints = "\t".join(["1", "", "5", "0", "1382", "4", "15", "2", "181", "1", "2", "", "2"])
    cats = "\t".join(["68fd1e64"] * 25 + [""])
    put("fuzz_ctr_cache", "convert_criteo_bucketize", "\x21\x07" + "0\t" + ints + "\t" + cats + "\n")
    # Converted with two XORs: the label of record 0 and a byte of the header.
    xors = struct.pack("<IB", 128 + 3, 0x40) + struct.pack("<IB", 50, 0x01)
    put("fuzz_ctr_cache", "convert_then_flip", b"\x05\x01" + xors + b"1 3:1 7:0.5\n0 2:1 9:-1\n")
    # Raw caches (byte 0 even).
    rec = struct.pack("<f2Q2f", 1.0, 11, 12, 1.0, 0.5) + struct.pack("<f2Q2f", 0.0, 13, 14, 1.0, 1.0)
    put("fuzz_ctr_cache", "raw_one_hot", b"\x00\x03" + cache_header(2, 0, 2, 0, 2, 0, 0, 2) + rec)
    pad = (1 << 64) - 1
    rec = struct.pack("<f3Q3f", 1.0, 5, pad, pad, 1.0, 0, 0) + struct.pack("<f3Q3f", 0.0, 6, 7, 8, 1, 1, 1)
    put("fuzz_ctr_cache", "raw_multi_hot_padded", b"\x00\x80" + cache_header(2, 0, 1, 1, 3, 0, 0, 2) + rec)
    rec = struct.pack("<f2f2Q2f", float("nan"), 1.0, float("inf"), 1, 2, 1.0, 1.0)
    put("fuzz_ctr_cache", "raw_nan_label", b"\x00\x01" + cache_header(1, 2, 2, 0, 2, 0, 0, 1) + rec)
    put("fuzz_ctr_cache", "raw_truncated", b"\x00\x01" + cache_header(2, 0, 2, 0, 2, 0, 0, 9) + rec)


def manifest_seeds():
    manifest = {
        "format_version": 1, "step": 40, "created": "2026-12-06T12:00:00Z",
        "model": {"type": "mf", "dim": 8, "global_bias": 3.5,
                  "tables": [{"table_id": 0, "name": "users", "dim": 9, "state_floats": 9,
                              "optimizer": "adagrad", "num_rows": 943}]},
        "shard_map": {"version": "1", "num_slots": 16384,
                      "ranges": [{"begin": 0, "end": 16384, "server_rank": 0}]},
        "num_servers": 1, "num_workers": 2,
        "files": [{"name": "server-0-shard-0-table-0.rows", "size_bytes": "136", "crc32": 12345,
                   "table_id": 0, "num_rows": "1", "slot_begin": 0, "slot_end": 16384,
                   "kind": "KIND_ROWS"},
                  {"name": "worker-0.state", "size_bytes": "20", "crc32": 1, "kind": "KIND_WORKER"}],
        "config": "lr = 0.02\n",
    }
    put("fuzz_manifest", "valid", json.dumps(manifest, indent=1))
    manifest["model"]["global_bias"] = "NaN"
    manifest["step"] = "-9223372036854775808"
    put("fuzz_manifest", "nan_bias_min_step", json.dumps(manifest))
    put("fuzz_manifest", "camel_case_minimal", '{"formatVersion": 1, "numServers": 1}')
    put("fuzz_manifest", "version_2", '{"format_version": 2}')
    put("fuzz_manifest", "unknown_field_and_bad_enum", '{"format_version": 1, "x": 1, "files": [{"kind": "KIND_NOPE"}]}')
    put("fuzz_manifest", "truncated", json.dumps(manifest)[:90])
    put("fuzz_manifest", "latin1_name", '{"format_version": 1, "files": [{"name": "\xe9\\u0000../x"}]}')


def row_file(table_id, dim, state, slot_begin, slot_end, num_rows, body):
    h = b"TSROWS01" + struct.pack("<6IQ", 1, table_id, dim, state, slot_begin, slot_end, num_rows)
    return h + b"\0" * (64 - len(h)) + body


def row_file_seeds():
    body = struct.pack("<Q3f", 7, 0.5, -1.0, 0.25) + struct.pack("<Q3f", 9, 1.0, 2.0, 3.0)
    rows = row_file(0, 2, 1, 0, 16384, 2, body)
    put("fuzz_row_file", "valid", b"\x00" + rows)
    put("fuzz_row_file", "crc_off", b"\x01" + rows)
    put("fuzz_row_file", "rows_off", b"\x03" + rows)
    put("fuzz_row_file", "empty_table", b"\x00" + row_file(2, 16, 0, 5, 9, 0, b""))
    put("fuzz_row_file", "bad_magic", b"\x00" + b"X" + rows[1:])
    # num_rows * row size wraps around 2^64 to the file's one row: 16-byte rows, 2^60 + 1 rows.
    put("fuzz_row_file", "rows_times_size_wraps",
        b"\x00" + row_file(0, 1, 1, 0, 16384, (1 << 60) + 1, struct.pack("<Q2f", 7, 1.0, 2.0)))
    # dim + state_floats wraps in 32 bits (rows of 2^32 floats, as export sizes them: 0), and the
    # row count is chosen so that rows x row size wraps to the one key + 8 bytes in the file.
    row_bytes = 8 + 4 * (1 << 32)
    n = (2 * pow(row_bytes // 8, -1, 1 << 61)) % (1 << 61)
    assert (n * row_bytes) % (1 << 64) == 16
    put("fuzz_row_file", "row_width_wraps",
        b"\x00" + row_file(0, 0xFFFFFFFF, 1, 0, 16384, n, struct.pack("<Q2f", 7, 1.0, 2.0)))


def npy(descr, shape, payload, version=1, fortran=False):
    dims = "".join(f"{d}, " if len(shape) == 1 else f"{d}, " for d in shape).rstrip(" ")
    if len(shape) > 1:
        dims = dims.rstrip(",")
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (descr, fortran, dims)
    pre = 10 if version == 1 else 12
    header += " " * ((64 - (pre + len(header) + 1) % 64) % 64) + "\n"
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode() + payload


def npy_seeds():
    put("fuzz_npy", "keys_u8", npy("<u8", [3], struct.pack("<3Q", 1, 2, 3)))
    put("fuzz_npy", "emb_f4_2x3", npy("<f4", [2, 3], struct.pack("<6f", *range(6))))
    put("fuzz_npy", "empty_0", npy("<f4", [0], b""))
    put("fuzz_npy", "scalar", npy("<u8", [], struct.pack("<Q", 5)))
    put("fuzz_npy", "fortran", npy("<f4", [2, 2], struct.pack("<4f", *range(4)), fortran=True))
    put("fuzz_npy", "version2", npy("<f4", [2], struct.pack("<2f", 1, 2), version=2))
    put("fuzz_npy", "shape_too_large", npy("<u8", [1 << 30, 1 << 20], b""))
    put("fuzz_npy", "short_payload", npy("<u8", [4], struct.pack("<Q", 5)))
    put("fuzz_npy", "version2_huge_header_len", b"\x93NUMPY\x02\x00\xff\xff\xff\xf0{'descr'")


def config_seeds():
    put("fuzz_config", "train_sections", "\x00[model]\ndim = 32\nmodel = mf\n[optim]\nlr = 0.05\n# comment\nworkers = 2\n")
    put("fuzz_config", "train_ctr", "\x00model = deepfm\nmlp = 64,32\nemb-dim = 8\nformat = criteo\n")
    put("fuzz_config", "train_unknown", "\x00nope = 1\n")
    put("fuzz_config", "train_config_loop", "\x00config = /proc/self/fd/0\n")
    put("fuzz_config", "train_bad_values", "\x00dim = -3\nlr = 1e999\nworkers = 99999999999\n")
    put("fuzz_config", "train_latin1_crlf", "\x00[mod\xe9l]\r\ndim = \xff\r\n")
    put("fuzz_config", "convert", "\x01input = a.txt\noutput = b.cache\nformat = libsvm\n")
    put("fuzz_config", "export", "\x02checkpoint = /nonexist\nout = /\n")
    put("fuzz_config", "recommend", "\x03export = e\nuser = 12\nk = 0\n")
    put("fuzz_config", "no_newline_no_equals", "\x00[model\ndim")


if __name__ == "__main__":
    message_seeds()
    ratings_seeds()
    ctr_text_seeds()
    ctr_cache_seeds()
    manifest_seeds()
    row_file_seeds()
    npy_seeds()
    config_seeds()
