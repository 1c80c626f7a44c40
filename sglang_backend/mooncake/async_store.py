"""mooncake.async_store: MooncakeDistributedStoreAsync, the awaitable form of the store.

Every method of MooncakeDistributedStore is also there as ``async_<name>``: a coroutine that runs
the blocking call on the event loop's default executor (the C++ call releases the GIL), so an
asyncio program can keep many store calls in flight. The synchronous methods stay available.

    store = MooncakeDistributedStoreAsync()
    store.setup(...)                      # or: await store.async_setup(...)
    rc = await store.async_batch_put_from(keys, ptrs, sizes)
    values = await store.async_get_batch(keys)

Also reachable as ``mooncake.store.MooncakeDistributedStoreAsync``.
"""

import asyncio
import functools

from mooncake.store import MooncakeDistributedStore

_PREFIX = "async_"


class MooncakeDistributedStoreAsync(MooncakeDistributedStore):
    """MooncakeDistributedStore with an awaitable ``async_<method>`` for each method."""

    def __getattr__(self, name):
        # Only reached for names the class does not define.
        if not name.startswith(_PREFIX):
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}")
        sync_name = name[len(_PREFIX):]
        method = getattr(MooncakeDistributedStore, sync_name, None)
        if method is None or sync_name.startswith("_") or not callable(method):
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r} "
                f"(MooncakeDistributedStore has no method {sync_name!r})")
        bound = getattr(self, sync_name)

        async def call(*args, **kwargs):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                None, functools.partial(bound, *args, **kwargs))

        call.__name__ = name
        call.__qualname__ = f"{type(self).__name__}.{name}"
        call.__doc__ = f"Awaitable {sync_name}: {method.__doc__ or ''}"
        # Cache on the instance: the next lookup does not come back here.
        object.__setattr__(self, name, call)
        return call
