"""python_headers: the CPython headers found on this machine, one cc_library per version.

For each CPython 3.10-3.13 the first of these that holds Python.h is used:
  1. Debian's pythonX.Y-dev on this machine (/usr/include/pythonX.Y; bookworm has 3.11);
  2. Debian's libpythonX.Y-dev unpacked by tools/foreign_root --prepare into
     /var/cache/mooncake-build/python/X.Y (trixie's 3.13, fetched with apt in the Debian 13 root);
  3. a pyenv build's include/pythonX.Y ($PYENV_ROOT or ~/.pyenv; this machine has 3.10 and 3.12).
The generated repository has //:cpXY targets and versions.bzl with PYTHON_TAGS (found ones, in order),
PYTHON_HEADER_SOURCES (tag -> where the headers came from) and PYTHON_INTERPRETERS (tag -> an
interpreter of that version on this machine, where there is one), which sglang_backend/wheels.bzl
reads to build one wheel per found version. The repository is local and re-evaluated when Bazel
restarts, so headers unpacked later are picked up.
"""

_VERSIONS = ["3.10", "3.11", "3.12", "3.13"]
_CACHE = "/var/cache/mooncake-build/python"
_ARCH = "x86_64-linux-gnu"

def _candidates(rctx, version):
    """(include dir, multiarch include dir or None, description, interpreter or None) in order of
    preference."""
    out = [
        ("/usr/include/python" + version, "/usr/include/%s/python%s" % (_ARCH, version), "Debian (this machine)", "/usr/bin/python" + version),
        ("%s/%s/usr/include/python%s" % (_CACHE, version, version), "%s/%s/usr/include/%s/python%s" % (_CACHE, version, _ARCH, version), "Debian (tools/foreign_root --prepare)", None),
    ]
    home = rctx.os.environ.get("HOME", "/root")
    pyenv = rctx.os.environ.get("PYENV_ROOT", home + "/.pyenv")
    versions = rctx.path(pyenv + "/versions")
    if versions.exists:
        for entry in sorted([str(p) for p in versions.readdir()], reverse = True):
            if entry.split("/")[-1].startswith(version + "."):
                out.append((entry + "/include/python" + version, None, "pyenv " + entry.split("/")[-1], entry + "/bin/python" + version))
    return out

def _python_headers_impl(rctx):
    tags = []
    sources = {}
    interpreters = {}
    build = ['package(default_visibility = ["//visibility:public"])', ""]
    for version in _VERSIONS:
        tag = "cp" + version.replace(".", "")
        for include, arch, source, interpreter in _candidates(rctx, version):
            if not rctx.path(include + "/Python.h").exists:
                continue
            rctx.symlink(include, "%s/python%s" % (tag, version))
            includes = ['"%s/python%s"' % (tag, version)]
            globs = ['"%s/python%s/**/*.h"' % (tag, version)]
            if arch != None and rctx.path(arch).exists:
                # Debian's pyconfig.h includes <x86_64-linux-gnu/pythonX.Y/pyconfig.h>.
                rctx.symlink(arch, "%s/%s/python%s" % (tag, _ARCH, version))
                includes.append('"%s"' % tag)
                globs.append('"%s/%s/python%s/*.h"' % (tag, _ARCH, version))
            build.append("cc_library(\n    name = \"%s\",\n    hdrs = glob([%s]),\n    includes = [%s],\n)\n" %
                         (tag, ", ".join(globs), ", ".join(includes)))
            tags.append(tag)
            sources[tag] = "%s: %s" % (source, include)
            if interpreter != None and rctx.path(interpreter).exists:
                interpreters[tag] = interpreter
            break
    rctx.file("BUILD.bazel", "\n".join(build))
    rctx.file("versions.bzl", "PYTHON_TAGS = %r\nPYTHON_HEADER_SOURCES = %r\nPYTHON_INTERPRETERS = %r\n" % (tags, sources, interpreters))

python_headers_repository = repository_rule(
    implementation = _python_headers_impl,
    local = True,
    environ = ["HOME", "PYENV_ROOT"],
)
