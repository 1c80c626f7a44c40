"""mooncake-cpp: a Mooncake-compatible KV-cache store for SGLang HiCache.

Import surface (the same names as the Mooncake wheel):
    mooncake.store   MooncakeDistributedStore, ReplicateConfig, MooncakeHostMemAllocator
    mooncake.engine  TransferEngine, TransferOpcode
Commands: mooncake_master, mooncake_http_metadata_server,
    python -m mooncake.http_metadata_server [--host H] [--port P]
"""

__version__ = "0.1.0"
