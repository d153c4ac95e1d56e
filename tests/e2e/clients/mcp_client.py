"""Drives cairn's MCP endpoint with the official `mcp` Python SDK.

Usage: mcp_client.py URL CALLS_JSON

With CAIRN_TOKEN set, every request carries `Authorization: Bearer $CAIRN_TOKEN`.

CALLS_JSON is a list of [tool, arguments] pairs. The script initializes a
session over streamable HTTP, pings, lists the tools, makes each call in
order and prints one JSON object on stdout for the Rust test to assert on:
{"protocol_version", "server_name", "tools": {name: {description,
input_schema}}, "calls": [{is_error, text, structured} | {protocol_error:
{code, message}}]}.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, calls: list) -> dict:
    token = os.environ.get("CAIRN_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with streamable_http_client(url, http_client=create_mcp_http_client(headers=headers)) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            await session.send_ping()
            listed = await session.list_tools()
            out = {
                "protocol_version": init.protocol_version,
                "server_name": init.server_info.name,
                "tools": {
                    t.name: {"description": t.description, "input_schema": t.input_schema}
                    for t in listed.tools
                },
                "calls": [],
            }
            for name, arguments in calls:
                try:
                    r = await session.call_tool(name, arguments)
                except MCPError as e:
                    out["calls"].append({"protocol_error": {"code": e.code, "message": e.message}})
                    continue
                text = "\n".join(c.text for c in r.content if getattr(c, "type", None) == "text")
                out["calls"].append(
                    {"is_error": r.is_error, "text": text, "structured": r.structured_content}
                )
            return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))))
