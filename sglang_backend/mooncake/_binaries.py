"""Locates and runs the C++ programs shipped inside the wheel (mooncake/bin/)."""

import os
import sys

_BIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


def binary_path(name):
    """Absolute path of the shipped program `name`; exits with a clear message if missing."""
    path = os.path.join(_BIN_DIR, name)
    if not os.access(path, os.X_OK):
        sys.stderr.write(
            f"mooncake: {path} is missing or not executable; reinstall the "
            "mooncake-cpp wheel\n")
        sys.exit(127)
    return path


def exec_binary(name, args):
    """Replaces this process with the shipped program `name`, passing `args` on."""
    path = binary_path(name)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(path, [name] + list(args))
