"""What a tool call returns (`ToolResult`), and its shape for each model API.

A result is a list of content blocks (text, images) plus an error flag and optional structured
data. Each API wants it differently:

    OpenAI Chat Completions  a `tool` message (text only: images follow in a `user` message)
    OpenAI Responses         a `function_call_output` item (text and `input_image` parts)
    Anthropic Messages       a `tool_result` content block (text and base64 `image` blocks, is_error)
    MCP                      a CallToolResult (content, isError, structuredContent)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class TextContent:
    text: str


@dataclass(frozen=True)
class ImageContent:
    """An image for the model: base64 `data` of `mime_type` (image/png, image/jpeg, ...)."""

    data: str
    mime_type: str


Content = Union[TextContent, ImageContent]


@dataclass(frozen=True)
class ToolResult:
    """The outcome of one tool call. `is_error` marks a call the model should see as failed (bad
    arguments, a missing file, a command that exited non-zero); `data` is the same outcome as JSON
    for programs (MCP `structuredContent`)."""

    content: list[Content] = field(default_factory=list)
    is_error: bool = False
    data: dict[str, Any] | None = None

    @classmethod
    def of(cls, value: Any, is_error: bool = False) -> ToolResult:
        """A result from what a tool function returned: a ToolResult, text, JSON-able data or None."""
        if isinstance(value, ToolResult):
            return value
        if value is None:
            return cls([TextContent("done")], is_error)
        if isinstance(value, str):
            return cls([TextContent(value)], is_error)
        if isinstance(value, (TextContent, ImageContent)):
            return cls([value], is_error)
        text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
        return cls([TextContent(text)], is_error, value if isinstance(value, dict) else {"result": value})

    @classmethod
    def error(cls, message: str, **data: Any) -> ToolResult:
        return cls([TextContent(message)], True, {"error": message, **data})

    @property
    def text(self) -> str:
        """All text blocks joined; images appear as a one-line placeholder."""
        return "\n".join(c.text if isinstance(c, TextContent) else f"[image: {c.mime_type}]" for c in self.content)

    @property
    def images(self) -> list[ImageContent]:
        return [c for c in self.content if isinstance(c, ImageContent)]

    def _text_or_placeholder(self) -> str:
        return self.text or ("error" if self.is_error else "(no output)")

    def to_openai(self, tool_call_id: str) -> list[dict]:
        """Chat Completions messages answering one tool call: the `tool` message, then (if the result
        has images, which tool messages cannot carry) a `user` message showing them."""
        messages: list[dict] = [{"role": "tool", "tool_call_id": tool_call_id,
                                 "content": ("Error: " if self.is_error else "") + self._text_or_placeholder()}]
        if self.images:
            parts: list[dict] = [{"type": "text", "text": f"Images returned by tool call {tool_call_id}:"}]
            parts += [{"type": "image_url", "image_url": {"url": f"data:{i.mime_type};base64,{i.data}"}}
                      for i in self.images]
            messages.append({"role": "user", "content": parts})
        return messages

    def to_openai_responses(self, call_id: str) -> dict:
        """A Responses API `function_call_output` input item."""
        if not self.images:
            return {"type": "function_call_output", "call_id": call_id,
                    "output": ("Error: " if self.is_error else "") + self._text_or_placeholder()}
        output: list[dict] = []
        for c in self.content:
            if isinstance(c, TextContent):
                output.append({"type": "input_text", "text": c.text})
            else:
                output.append({"type": "input_image", "image_url": f"data:{c.mime_type};base64,{c.data}"})
        return {"type": "function_call_output", "call_id": call_id, "output": output}

    def to_anthropic(self, tool_use_id: str) -> dict:
        """An Anthropic `tool_result` content block (goes in the next `user` message)."""
        blocks: list[dict] = []
        for c in self.content:
            if isinstance(c, TextContent):
                if c.text:
                    blocks.append({"type": "text", "text": c.text})
            else:
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": c.mime_type,
                                                           "data": c.data}})
        if not blocks:
            blocks.append({"type": "text", "text": self._text_or_placeholder()})
        return {"type": "tool_result", "tool_use_id": tool_use_id, "content": blocks, "is_error": self.is_error}

    def to_mcp(self) -> dict:
        """An MCP CallToolResult, as JSON."""
        content = [{"type": "text", "text": c.text} if isinstance(c, TextContent)
                   else {"type": "image", "data": c.data, "mimeType": c.mime_type} for c in self.content]
        result: dict = {"content": content, "isError": self.is_error}
        if self.data is not None:
            result["structuredContent"] = self.data
        return result
