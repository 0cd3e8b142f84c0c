"""`process.Process`: commands and PTYs, translated one to one into the agent's process ops (docs/e2b.md §3.5)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from ...protocol import process_pb2 as pb
from ...protocol.process_connect import Process
from ..request_info import note
from ..sandbox_text import utf8, utf8_json
from .routing import SandboxHandle, current_sandbox
from .rpc import deadline, request_user, unary
from .streams import guarded

_KEEPALIVE = pb.ProcessEvent(keepalive=pb.ProcessEvent.KeepAlive())


class ProcessService(Process):
    async def list(self, request: pb.ListRequest, ctx: RequestContext) -> pb.ListResponse:
        sandbox = current_sandbox()
        reply = await unary(ctx, sandbox.agent.list_processes())
        return pb.ListResponse(processes=[  # a forged agent's text may hold lone surrogates: protobuf refuses them
            pb.ProcessInfo(pid=p["pid"], tag=_text(p.get("tag")), config=pb.ProcessConfig(
                cmd=utf8(p["cmd"]), args=map(utf8, p["args"]), envs=utf8_json(p["envs"]), cwd=_text(p.get("cwd"))))
            for p in reply])

    async def start(self, request: pb.StartRequest, ctx: RequestContext) -> AsyncIterator[pb.StartResponse]:
        sandbox = current_sandbox()
        process = request.process
        pty = None
        if request.HasField("pty"):
            pty = {"cols": request.pty.size.cols, "rows": request.pty.size.rows}
        events = sandbox.agent.start(
            cmd=process.cmd, args=list(process.args), envs=dict(process.envs),
            cwd=process.cwd if process.HasField("cwd") else None, user=request_user(ctx, sandbox), pty=pty,
            # envd keeps stdin open unless the request turns it off (older SDKs send nothing).
            stdin=not request.HasField("stdin") or request.stdin,
            tag=request.tag if request.HasField("tag") else None,
            # The client's deadline is the command's timeout: the agent kills the process at it.
            timeout_ms=deadline(ctx) or 0)
        started = False
        try:
            async for event in _process_events(events, sandbox, ctx):
                started = started or event.HasField("start")
                yield pb.StartResponse(event=event)
        except ConnectError as e:
            if not started:  # the audit trail: this start failed (the stream's status is 200 regardless)
                note(error=e.code.value)
            raise

    async def connect(self, request: pb.ConnectRequest, ctx: RequestContext) -> AsyncIterator[pb.ConnectResponse]:
        sandbox = current_sandbox()
        events = sandbox.agent.connect(**_selector(request.process))
        async for event in _process_events(events, sandbox, ctx):
            yield pb.ConnectResponse(event=event)

    async def send_input(self, request: pb.SendInputRequest, ctx: RequestContext) -> pb.SendInputResponse:
        agent = current_sandbox().agent
        data, is_pty = _input(request.input)
        await unary(ctx, agent.send_input(data=data, pty=is_pty, **_selector(request.process)))
        return pb.SendInputResponse()

    async def stream_input(self, request: AsyncIterator[pb.StreamInputRequest],
                           ctx: RequestContext) -> pb.StreamInputResponse:
        agent = current_sandbox().agent
        first = await anext(request, None)
        if first is None or first.WhichOneof("event") != "start":
            raise ConnectError(Code.INVALID_ARGUMENT, "the input stream must begin with a start event")
        inputs = (_input(m.data.input) async for m in request if m.WhichOneof("event") == "data")
        # The agent takes one kind of input per stream: the first chunk tells which.
        data, is_pty = await anext(inputs, (b"", False))

        async def chunks() -> AsyncIterator[bytes]:
            yield data
            async for more, more_pty in inputs:
                if more_pty != is_pty:
                    raise ConnectError(Code.INVALID_ARGUMENT, "stdin and pty input cannot be mixed")
                yield more

        await unary(ctx, agent.stream_input(chunks(), pty=is_pty, **_selector(first.start.process)))
        return pb.StreamInputResponse()

    async def send_signal(self, request: pb.SendSignalRequest, ctx: RequestContext) -> pb.SendSignalResponse:
        if request.signal == pb.SIGNAL_UNSPECIFIED:
            raise ConnectError(Code.INVALID_ARGUMENT, "a signal is required")
        agent = current_sandbox().agent
        await unary(ctx, agent.send_signal(signal=int(request.signal), **_selector(request.process)))
        return pb.SendSignalResponse()

    async def update(self, request: pb.UpdateRequest, ctx: RequestContext) -> pb.UpdateResponse:
        agent = current_sandbox().agent
        if request.HasField("pty"):
            size = request.pty.size
            await unary(ctx, agent.resize(cols=size.cols, rows=size.rows, **_selector(request.process)))
        return pb.UpdateResponse()

    async def close_stdin(self, request: pb.CloseStdinRequest, ctx: RequestContext) -> pb.CloseStdinResponse:
        agent = current_sandbox().agent
        await unary(ctx, agent.close_stdin(**_selector(request.process)))
        return pb.CloseStdinResponse()


def _selector(selector: pb.ProcessSelector) -> dict:
    which = selector.WhichOneof("selector")
    if which is None:
        raise ConnectError(Code.INVALID_ARGUMENT, "a process pid or tag is required")
    return {which: getattr(selector, which)}


def _input(message: pb.ProcessInput) -> tuple[bytes, bool]:
    """(data, is_pty) of a ProcessInput."""
    which = message.WhichOneof("input")
    return (message.pty, True) if which == "pty" else (message.stdin, False)


async def _process_events(events: AsyncIterator[dict], sandbox: SandboxHandle,
                          ctx: RequestContext) -> AsyncIterator[pb.ProcessEvent]:
    """The agent's process events (see server/agent_client.py) as ProcessEvents."""
    async for event in guarded(events, sandbox, ctx, lambda: {"keepalive": {}}):
        if "keepalive" in event:
            yield _KEEPALIVE
        elif start := event.get("start"):
            yield pb.ProcessEvent(start=pb.ProcessEvent.StartEvent(pid=start["pid"]))
        elif end := event.get("end"):
            yield pb.ProcessEvent(end=pb.ProcessEvent.EndEvent(
                exit_code=end["exit_code"], exited=end["exited"], status=utf8(end["status"]),
                error=_text(end.get("error"))))
        else:
            yield pb.ProcessEvent(data=pb.ProcessEvent.DataEvent(**event))
            if sandbox.output_rate is not None:  # the relay's CPU is ours: bounded per sandbox
                await sandbox.output_rate.take(len(next(iter(event.values()))))


def _text(value: str | None) -> str | None:
    return None if value is None else utf8(value)
