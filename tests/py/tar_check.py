"""Reads or writes tar files with Python's tarfile, for the tar tests.

read PATH      -> JSON list of [name, size, sha256] for every regular member
write PATH     -> writes a PAX archive (long names, unicode, a directory)
"""
import hashlib
import io
import json
import sys
import tarfile

mode, path = sys.argv[1], sys.argv[2]
if mode == "read":
    with tarfile.open(path) as tar:
        out = []
        for m in tar.getmembers():
            if m.isfile():
                data = tar.extractfile(m).read()
                out.append([m.name, m.size, hashlib.sha256(data).hexdigest()])
    print(json.dumps(out))
else:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        d = tarfile.TarInfo("folder")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        add("folder/000000001.txt", b"short")
        add("deep/" + "x" * 150 + "/000000002.txt", b"a member with a name longer than 100 bytes")
        add("caf\u00e9/000000003.txt", "unicode name \u00e9".encode())
        add("big.bin", bytes(range(256)) * 40)
