"""mooncake.engine: the transfer engine as SGLang imports it.

The classes live in the `mooncake.store` extension module (one shared object, so a store and a
TransferEngine can share one engine: `store.setup(..., engine.get_engine())`).
"""

from mooncake.store import engine as _engine

TransferEngine = _engine.TransferEngine
TransferOpcode = _engine.TransferOpcode
EngineHandle = _engine.EngineHandle

__all__ = ["TransferEngine", "TransferOpcode", "EngineHandle"]
