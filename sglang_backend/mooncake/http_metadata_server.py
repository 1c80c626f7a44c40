"""`python -m mooncake.http_metadata_server [--host H] [--port P]`.

Runs the HTTP metadata server (the C++ binary shipped in the wheel) in this process's place, with
the same arguments as Mooncake's Python server: --host (default 0.0.0.0) and --port (default 8080).
"""

import sys

from mooncake._binaries import exec_binary


def main(argv=None):
    """Execs the server with `argv` (default: this process's arguments)."""
    exec_binary("http_metadata_server", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
