"""Console-script entry points of the wheel: they exec the shipped C++ binaries.

    mooncake_master [--port 50051] [--metrics_port 9003] [--client_ttl 10] ...
    mooncake_http_metadata_server [--host 0.0.0.0] [--port 8080]
    mooncake_storage_node --master=HOST:PORT [--segment_size=4gb] ...
    mooncake_client --master_server_address=HOST:PORT [--port=50052] [--global_segment_size=4gb] ...
"""

import sys

from mooncake._binaries import exec_binary


def master_main():
    """`mooncake_master`: the master service (gRPC on --port, metrics HTTP on --metrics_port)."""
    exec_binary("mooncake_master", sys.argv[1:])


def http_metadata_server_main():
    """`mooncake_http_metadata_server`: the HTTP metadata server (GET/PUT/DELETE /metadata)."""
    exec_binary("http_metadata_server", sys.argv[1:])


def storage_node_main():
    """`mooncake_storage_node`: a process that only contributes memory to the store."""
    exec_binary("mooncake_storage_node", sys.argv[1:])


def client_main():
    """`mooncake_client`: the storage process of standalone mode (setup_dummy connects to it)."""
    exec_binary("mooncake_client", sys.argv[1:])
