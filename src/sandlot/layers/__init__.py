"""Read-only layers: a directory or a sandbox's writable layer committed as a layer, layers
stacked under new sandboxes (snapshots, fork, filesystem pause; templates from recipes later).

    store.py   LayerStore: <home>/layers, content-addressed, reference-counted, gc, stack()
    tree.py    the exact copy (uid shift, whiteouts, xattrs) and its digest
    merge.py   layers merged into one when a stack grows past store.MAX_STACK
    mount.py   a stack id-mapped as the lower of one sandbox's overlay (the namespace runtime)

Use: `digest = store.commit(directory, holder, uid_base=...)`, `digests = store.stack([...],
holder)`, then a Template with `layers=store.paths(digests)` for the runtime to create from;
`store.release(holder)` and `store.gc()` when the holder is gone.
"""

from .store import MAX_STACK, LayerStore

__all__ = ["MAX_STACK", "LayerStore"]
