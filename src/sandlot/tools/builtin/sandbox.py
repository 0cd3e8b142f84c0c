"""Tools about the sandbox itself: status, resource usage, reset."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from .._context import ToolContext
from .._result import TextContent, ToolResult
from .._tool import tool
from ._common import human


@tool(category="sandbox")
async def get_sandbox_status(ctx: ToolContext) -> ToolResult:
    """The sandbox's id, template, state, how long it has left, and its CPU, memory and disk limits."""
    info = await ctx.sandbox.get_info()
    left = (info.end_at - datetime.now(timezone.utc)).total_seconds() if info.end_at else None
    data = {"sandbox_id": info.sandbox_id, "template": info.template_id, "state": info.state,
            "started_at": info.started_at.isoformat() if info.started_at else None,
            "seconds_left": round(left) if left is not None else None, "cpu_count": info.cpu_count,
            "memory_mb": info.memory_mb, "disk_mb": info.disk_size_mb, "metadata": info.metadata}
    return ToolResult([TextContent(json.dumps(data, indent=2))], data=data)


@tool(category="sandbox")
async def get_resource_usage(ctx: ToolContext) -> ToolResult:
    """Current CPU, memory and disk use of the sandbox."""
    samples = await ctx.sandbox.get_metrics()
    if not samples:
        return ToolResult([TextContent("No usage sample yet")], data={})
    m = samples[-1]
    data = {"cpu_count": m.cpu_count, "cpu_used_pct": round(m.cpu_used_pct, 1), "memory_used": m.mem_used,
            "memory_total": m.mem_total, "disk_used": m.disk_used, "disk_total": m.disk_total}
    text = (f"CPU {data['cpu_used_pct']}% of {m.cpu_count} core(s); memory {human(m.mem_used)} of "
            f"{human(m.mem_total)}; disk {human(m.disk_used)} of {human(m.disk_total)}")
    return ToolResult([TextContent(text)], data=data)


@tool(category="sandbox")
async def reset_sandbox(ctx: ToolContext) -> ToolResult:
    """Start over in a fresh sandbox: every file, process, installed package and variable is gone."""
    old = ctx.sandbox.sandbox_id
    await ctx.sandbox.reset()
    return ToolResult([TextContent(f"The sandbox was reset (a fresh one, {ctx.sandbox.sandbox_id}, replaced {old})")],
                      data={"old_sandbox_id": old, "sandbox_id": ctx.sandbox.sandbox_id})
