"""A scripted model server: a local HTTP server speaking the OpenAI Chat Completions, OpenAI
Responses and Anthropic Messages wire formats, for tool-calling loops driven by the real `openai`
and `anthropic` client libraries.

No real model is reachable from here (no network but the package registries), so the model's side
is scripted; everything else in a loop (the client libraries, their (de)serialization of tool calls
and results, the toolset, the SDK, the sandbox) is real. The script is a list of turns, each a list
of (tool name, arguments) calls; when the turns run out, the "model" answers with text quoting the
last tool results it was sent, so a test sees they arrived.
"""

from __future__ import annotations

import json
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from support import free_port


class ScriptedModel:
    def __init__(self, turns: list[list[tuple[str, dict]]]):
        self.turns = turns
        self.requests: list[dict] = []  # every request body, as received
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"]),
                                Route("/v1/responses", self.responses, methods=["POST"]),
                                Route("/v1/messages", self.messages, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> ScriptedModel:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def _turn(self, done: int) -> list[tuple[str, dict]] | None:
        return self.turns[done] if done < len(self.turns) else None

    # --- OpenAI Chat Completions ---

    async def chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        messages = body["messages"]
        done = sum(1 for m in messages if m["role"] == "assistant")
        turn = self._turn(done)
        if turn is None:
            results = [m["content"] for m in messages if m["role"] == "tool"][-len(self.turns[-1]):]
            message = {"role": "assistant", "content": "Tool results: " + json.dumps(results)}
            finish = "stop"
        else:
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{done}_{i}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}} for i, (name, args) in enumerate(turn)]}
            finish = "tool_calls"
        return JSONResponse({"id": f"chatcmpl-{done}", "object": "chat.completion", "created": int(time.time()),
                             "model": body["model"], "choices": [{"index": 0, "message": message,
                                                                  "finish_reason": finish, "logprobs": None}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    # --- OpenAI Responses ---

    async def responses(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        items = body["input"] if isinstance(body["input"], list) else []
        done = len({i["call_id"].split("_")[1] for i in items if i.get("type") == "function_call"})
        turn = self._turn(done)
        if turn is None:
            results = [i["output"] for i in items if i.get("type") == "function_call_output"][-len(self.turns[-1]):]
            output = [{"type": "message", "id": "msg_x", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": "Tool results: " + json.dumps(results),
                                    "annotations": []}]}]
        else:
            output = [{"type": "function_call", "id": f"fc_{done}_{i}", "call_id": f"call_{done}_{i}", "name": name,
                       "arguments": json.dumps(args), "status": "completed"} for i, (name, args) in enumerate(turn)]
        return JSONResponse({"id": f"resp_{done}", "object": "response", "created_at": int(time.time()),
                             "model": body["model"], "status": "completed", "output": output,
                             "parallel_tool_calls": True, "tool_choice": "auto", "tools": body.get("tools", [])})

    # --- Anthropic Messages ---

    async def messages(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        messages = body["messages"]
        done = sum(1 for m in messages if m["role"] == "assistant")
        turn = self._turn(done)
        if turn is None:
            blocks = [b for m in messages if m["role"] == "user" and isinstance(m["content"], list)
                      for b in m["content"] if b.get("type") == "tool_result"][-len(self.turns[-1]):]
            content = [{"type": "text", "text": "Tool results: " + json.dumps(blocks)}]
            stop = "end_turn"
        else:
            content = [{"type": "tool_use", "id": f"toolu_{done}_{i}", "name": name, "input": args}
                       for i, (name, args) in enumerate(turn)]
            stop = "tool_use"
        return JSONResponse({"id": f"msg_{done}", "type": "message", "role": "assistant", "model": body["model"],
                             "content": content, "stop_reason": stop, "stop_sequence": None,
                             "usage": {"input_tokens": 1, "output_tokens": 1}})
