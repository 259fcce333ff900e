"""Reads or writes tar files with Python's tarfile, for the tar tests.

read PATH             -> JSON list of [name, size, sha256] for every regular member
hash FILE...          -> JSON list of the sha256 of each file's bytes
write PATH            -> a PAX archive (long names, unicode, a directory)
write-gnu PATH        -> a GNU_FORMAT archive: GNU `L` long names (and a `K` long
                         link name), names no ustar prefix can split
write-pax-size PATH   -> a PAX archive whose member's ustar size field says 0 while
                         its pax `size=` record holds the real size
write-no-end PATH     -> a USTAR archive of two WebDataset samples, cut right after
                         the last member's data (no end-of-archive blocks)
"""
import hashlib
import io
import json
import sys
import tarfile

BLOCK = 512


def members_of(path):
    out = []
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if m.isfile():
                data = tar.extractfile(m).read()
                out.append([m.name, m.size, hashlib.sha256(data).hexdigest()])
    return out


def archive(fmt, add_members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        def add(name, data, **fields):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            for key, value in fields.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data))
        add_members(tar, add)
    return bytearray(buf.getvalue())


def set_size_field(raw, header_at, size):
    """Rewrites a ustar header's size field and its checksum in place."""
    header = raw[header_at:header_at + BLOCK]
    header[124:136] = b"%011o\0" % size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    raw[header_at:header_at + BLOCK] = header


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "read":
        print(json.dumps(members_of(args[0])))
        return
    if mode == "hash":
        print(json.dumps([hashlib.sha256(open(p, "rb").read()).hexdigest() for p in args]))
        return
    path = args[0]
    if mode == "write":
        def pax_members(tar, add):
            d = tarfile.TarInfo("folder")
            d.type = tarfile.DIRTYPE
            tar.addfile(d)
            add("folder/000000001.txt", b"short")
            add("deep/" + "x" * 150 + "/000000002.txt", b"a member with a name longer than 100 bytes")
            add("caf\u00e9/000000003.txt", "unicode name \u00e9".encode())
            add("big.bin", bytes(range(256)) * 40)
        raw = archive(tarfile.PAX_FORMAT, pax_members)
    elif mode == "write-gnu":
        def gnu_members(tar, add):
            add("a" * 150 + ".txt", b"one name of 154 bytes, no slash to split at")
            add("dir/" + "b" * 200 + "/" + "c" * 120 + ".json", b'{"deep": true}')
            link = tarfile.TarInfo("l" * 130)
            link.type = tarfile.SYMTYPE
            link.linkname = "t" * 140
            tar.addfile(link)
            add("short.txt", b"after the link")
            add("e" * 99 + ".bin", bytes(range(256)) * 3)
        raw = archive(tarfile.GNU_FORMAT, gnu_members)
    elif mode == "write-pax-size":
        data = bytes((i * 7) % 251 for i in range(1500))
        raw = archive(tarfile.PAX_FORMAT, lambda tar, add: (
            add("000000001.bin", data, pax_headers={"size": str(len(data))}),
            add("000000001.txt", b"after the member whose size only pax knows")))
        # Block 0 is the pax header, block 1 its records, block 2 the member.
        assert raw[156:157] == b"x"
        set_size_field(raw, 2 * BLOCK, 0)
    elif mode == "write-no-end":
        raw = archive(tarfile.USTAR_FORMAT, lambda tar, add: (
            add("000000001.jpg", b"\xff\xd8 not really a jpeg"), add("000000001.txt", b"first"),
            add("000000002.jpg", b"\xff\xd8 another"), add("000000002.txt", b"last caption")))
        # tarfile pads to 10240-byte records after two zero blocks; cut all of it.
        end = len(raw.rstrip(b"\0"))
        raw = raw[:end + (-end % BLOCK)]
    else:
        raise SystemExit("unknown mode " + mode)
    with open(path, "wb") as f:
        f.write(raw)


if __name__ == "__main__":
    main()
