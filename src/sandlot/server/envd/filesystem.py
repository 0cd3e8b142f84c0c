"""`filesystem.Filesystem`: file operations and watches, translated into the agent's file ops (docs/e2b.md §3.6)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from connectrpc.request import RequestContext

from ...protocol import filesystem_pb2 as pb
from ...protocol.filesystem_connect import Filesystem
from ..request_info import note
from ..sandbox_text import utf8
from .errors import as_connect_errors
from .routing import current_sandbox
from .rpc import request_user, unary
from .streams import guarded
from .watchers import Watcher, Watchers

_FILE_TYPES = {"file": pb.FILE_TYPE_FILE, "dir": pb.FILE_TYPE_DIRECTORY, "symlink": pb.FILE_TYPE_SYMLINK}
_EVENT_TYPES = {"create": pb.EVENT_TYPE_CREATE, "write": pb.EVENT_TYPE_WRITE, "remove": pb.EVENT_TYPE_REMOVE,
                "rename": pb.EVENT_TYPE_RENAME, "chmod": pb.EVENT_TYPE_CHMOD}


class FilesystemService(Filesystem):
    def __init__(self, watchers: Watchers):
        self.watchers = watchers

    async def stat(self, request: pb.StatRequest, ctx: RequestContext) -> pb.StatResponse:
        sandbox = current_sandbox()
        reply = await unary(ctx, sandbox.agent.stat(request.path, request_user(ctx, sandbox)))
        return pb.StatResponse(entry=entry_info(reply))

    async def make_dir(self, request: pb.MakeDirRequest, ctx: RequestContext) -> pb.MakeDirResponse:
        sandbox = current_sandbox()
        note(path=request.path)  # for the audit trail
        reply = await unary(ctx, sandbox.agent.make_dir(request.path, request_user(ctx, sandbox)))
        return pb.MakeDirResponse(entry=entry_info(reply))

    async def move(self, request: pb.MoveRequest, ctx: RequestContext) -> pb.MoveResponse:
        sandbox = current_sandbox()
        note(path=request.source, destination=request.destination)
        reply = await unary(ctx, sandbox.agent.move(request.source, request.destination,
                                                    request_user(ctx, sandbox)))
        return pb.MoveResponse(entry=entry_info(reply))

    async def list_dir(self, request: pb.ListDirRequest, ctx: RequestContext) -> pb.ListDirResponse:
        sandbox = current_sandbox()
        entries = await unary(ctx, sandbox.agent.list_dir(request.path, request.depth or 1,
                                                         request_user(ctx, sandbox)))
        return pb.ListDirResponse(entries=[entry_info(e) for e in entries])

    async def remove(self, request: pb.RemoveRequest, ctx: RequestContext) -> pb.RemoveResponse:
        sandbox = current_sandbox()
        note(path=request.path)
        await unary(ctx, sandbox.agent.remove(request.path, request_user(ctx, sandbox)))
        return pb.RemoveResponse()

    async def watch_dir(self, request: pb.WatchDirRequest, ctx: RequestContext) -> AsyncIterator[pb.WatchDirResponse]:
        sandbox = current_sandbox()
        stream = sandbox.agent.watch(request.path, request_user(ctx, sandbox), recursive=request.recursive,
                                     include_entry=request.include_entry)
        async for message in guarded(stream, sandbox, ctx, lambda: {"keepalive": {}}):
            if "start" in message:
                yield pb.WatchDirResponse(start=pb.WatchDirResponse.StartEvent())
            elif event := message.get("event"):
                yield pb.WatchDirResponse(filesystem=filesystem_event(event))
            else:
                yield pb.WatchDirResponse(keepalive=pb.WatchDirResponse.KeepAlive())

    async def create_watcher(self, request: pb.CreateWatcherRequest,
                             ctx: RequestContext) -> pb.CreateWatcherResponse:
        sandbox = current_sandbox()
        user = request_user(ctx, sandbox)
        # The absolute path lets uploads find the watchers they must wait for (watchers.settle).
        directory = await unary(ctx, sandbox.agent.stat(request.path, user))
        stream = sandbox.agent.watch(request.path, user, recursive=request.recursive,
                                     include_entry=request.include_entry)
        try:
            await unary(ctx, anext(stream))  # the start message, or the agent's refusal
            with as_connect_errors():
                watcher_id = self.watchers.add(sandbox, Watcher(directory["path"], request.recursive, stream))
        except BaseException:
            await stream.aclose()  # the agent drops its watch
            raise
        return pb.CreateWatcherResponse(watcher_id=watcher_id)

    async def get_watcher_events(self, request: pb.GetWatcherEventsRequest,
                                 ctx: RequestContext) -> pb.GetWatcherEventsResponse:
        with as_connect_errors():
            events = self.watchers.take_events(current_sandbox(), request.watcher_id)
        return pb.GetWatcherEventsResponse(events=[filesystem_event(e) for e in events])

    async def remove_watcher(self, request: pb.RemoveWatcherRequest,
                             ctx: RequestContext) -> pb.RemoveWatcherResponse:
        with as_connect_errors():
            self.watchers.remove(current_sandbox(), request.watcher_id)
        return pb.RemoveWatcherResponse()


def entry_info(entry: dict) -> pb.EntryInfo:
    """An agent ENTRY as EntryInfo; `is_symlink` stays unset (the SDK would call it a SYMLINK)."""
    target = entry.get("symlink_target")
    info = pb.EntryInfo(
        name=utf8(entry["name"]), type=_FILE_TYPES.get(entry["type"], pb.FILE_TYPE_UNSPECIFIED),
        path=utf8(entry["path"]), size=entry["size"], mode=entry["mode"], permissions=utf8(entry["permissions"]),
        owner=utf8(entry["owner"]), group=utf8(entry["group"]),
        symlink_target=None if target is None else utf8(target),
        metadata={utf8(k): utf8(v) for k, v in (entry.get("metadata") or {}).items()})
    info.modified_time.FromNanoseconds(round(entry["mtime"] * 1e9))
    return info


def filesystem_event(event: dict) -> pb.FilesystemEvent:
    entry = event.get("entry")
    return pb.FilesystemEvent(name=utf8(event["name"]),
                              type=_EVENT_TYPES.get(event["type"], pb.EVENT_TYPE_UNSPECIFIED),
                              entry=entry_info(entry) if entry else None)
