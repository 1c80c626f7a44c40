"""Builds the mooncake-cpp wheel from Bazel outputs, with the standard library only.

    python3 build_wheel.py --out X.whl --version 0.1.0 --extension store.so \
        --binary mooncake_master --binary http_metadata_server --python mooncake/*.py

Layout inside the wheel:
    mooncake/*.py                                     pure-Python package
    mooncake/store.cpython-311-x86_64-linux-gnu.so    the extension module
    mooncake/bin/{mooncake_master,http_metadata_server}
    mooncake_cpp-<version>.dist-info/{METADATA,WHEEL,entry_points.txt,top_level.txt,RECORD}
The output is reproducible: fixed timestamps and a sorted file order.
"""

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import zipfile

DIST_NAME = "mooncake-cpp"
DIST_DIR_NAME = "mooncake_cpp"
TAG = "cp311-cp311-linux_x86_64"
EXTENSION_NAME = "store.cpython-311-x86_64-linux-gnu.so"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

DESCRIPTION = """\
# mooncake-cpp

A C++ reimplementation of the Mooncake KV-cache store that SGLang HiCache uses as its L3 tier
(`--hicache-storage-backend mooncake`). The import package is `mooncake`, with the same names as
the Mooncake wheel: `mooncake.store.MooncakeDistributedStore`, `ReplicateConfig`,
`MooncakeHostMemAllocator`, and `mooncake.engine.TransferEngine`.

Commands: `mooncake_master`, `mooncake_http_metadata_server` and
`python -m mooncake.http_metadata_server [--host H] [--port P]`.

## System libraries

The extension module and the two shipped programs (`mooncake/bin/mooncake_master`,
`mooncake/bin/http_metadata_server`) are not self-contained manylinux builds: they link the shared
libraries of Debian 12 (bookworm), x86_64, CPython 3.11. On such a machine install them with

    apt-get install libgrpc++1.51 libprotobuf32 libabsl20220623 libcpp-httplib0.11 libibverbs1

(the project's `tools/setup` installs them along with the build dependencies). The wheel is built
for, and tested on, that platform only; it does not download anything at install or run time.
"""

WHEEL_FILE = f"""\
Wheel-Version: 1.0
Generator: mooncake-cpp build_wheel.py
Root-Is-Purelib: false
Tag: {TAG}
"""

ENTRY_POINTS = """\
[console_scripts]
mooncake_master = mooncake.cli:master_main
mooncake_http_metadata_server = mooncake.cli:http_metadata_server_main
"""


def metadata(version):
    """The METADATA file (core metadata 2.1)."""
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {DIST_NAME}\n"
        f"Version: {version}\n"
        "Summary: Mooncake-compatible KV-cache store (C++) for SGLang HiCache\n"
        "License: Apache-2.0\n"
        "Platform: Debian 12 x86_64\n"
        "Requires-Python: ==3.11.*\n"
        "Requires-External: libgrpc++ (==1.51)\n"
        "Requires-External: libabsl (==20220623)\n"
        "Description-Content-Type: text/markdown\n"
        "\n" + DESCRIPTION)


def record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def check_extension(path):
    """Fails if the module leaves a symbol of our own code undefined.

    A shared object may keep undefined symbols (the Python C API's are resolved at import), so a
    missing library on the link line shows up only when Python imports the module. `nm` comes
    with binutils (a g++ dependency); without it the check is skipped.
    """
    nm = shutil.which("nm")
    if nm is None:
        return
    out = subprocess.run([nm, "-D", "--undefined-only", path], check=True,
                         capture_output=True, text=True).stdout
    ours = [line.split()[-1] for line in out.splitlines() if "8mooncake" in line]
    if ours:
        raise SystemExit(f"{path}: undefined mooncake symbols (a missing dependency): "
                         + ", ".join(ours))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="wheel file to write")
    parser.add_argument("--version", required=True)
    parser.add_argument("--extension", required=True, help="the pybind11 module (store.so)")
    parser.add_argument("--binary", action="append", default=[],
                        help="a program for mooncake/bin/ (repeatable)")
    parser.add_argument("--python", nargs="+", required=True,
                        help="files of the mooncake package")
    args = parser.parse_args()

    check_extension(args.extension)
    expected = f"{DIST_DIR_NAME}-{args.version}-{TAG}.whl"
    if os.path.basename(args.out) != expected:
        parser.error(f"--out must be named {expected} (the wheel's tags)")

    # (path inside the wheel, bytes, executable)
    entries = []
    for path in args.python:
        with open(path, "rb") as f:
            entries.append(("mooncake/" + os.path.basename(path), f.read(), False))
    with open(args.extension, "rb") as f:
        entries.append(("mooncake/" + EXTENSION_NAME, f.read(), True))
    for path in args.binary:
        with open(path, "rb") as f:
            entries.append(("mooncake/bin/" + os.path.basename(path), f.read(), True))
    info = f"{DIST_DIR_NAME}-{args.version}.dist-info"
    entries.append((f"{info}/METADATA", metadata(args.version).encode(), False))
    entries.append((f"{info}/WHEEL", WHEEL_FILE.encode(), False))
    entries.append((f"{info}/entry_points.txt", ENTRY_POINTS.encode(), False))
    entries.append((f"{info}/top_level.txt", b"mooncake\n", False))
    entries.sort(key=lambda e: e[0])

    names = [e[0] for e in entries]
    if len(set(names)) != len(names):
        parser.error("two files map to the same path in the wheel")

    record_lines = [f"{name},{record_hash(data)},{len(data)}" for name, data, _ in entries]
    record_lines.append(f"{info}/RECORD,,")
    entries.append((f"{info}/RECORD", ("\n".join(record_lines) + "\n").encode(), False))

    tmp = args.out + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as whl:
        for name, data, executable in entries:
            zinfo = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            zinfo.compress_type = zipfile.ZIP_DEFLATED
            zinfo.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
            whl.writestr(zinfo, data)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
