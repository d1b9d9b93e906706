"""The MCP server: its request handlers, over one gRPC connection to a jobworkerp server.

It keeps no state of its own beyond that connection and the change notifier: every listing is
read from the server when asked, so any number of clients, and any front of a Scalable cluster,
see the same workers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import mcp.types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError

from jobworkerp.cli.client.errors import describe
from jobworkerp.client.protocodec import CodecError
from jobworkerp.mcp import answers, resources
from jobworkerp.mcp.catalog import WorkerTool, fetch_tools, find_tool, listing_fingerprint
from jobworkerp.mcp.changes import ChangeNotifier
from jobworkerp.mcp.jobs import ResultNotKept, run_job

if TYPE_CHECKING:
    from jobworkerp.client.connection import Services
    from jobworkerp.mcp.settings import McpSettings

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Each tool is a jobworkerp worker: calling it runs one job with the arguments as the job's args and "
    "answers with the job's output (a failed job is a tool error naming its status). Long jobs report "
    "progress; cancelling a call deletes its job. Stored results are resources (jobworkerp://...)."
)


class JobworkerpMcp:
    """Handlers for one process; `server()` builds the SDK's low-level server around them."""

    def __init__(self, services: Services, settings: McpSettings, notifier: ChangeNotifier) -> None:
        self.services = services
        self.settings = settings
        self.notifier = notifier

    def _failure(self, what: str, exc: Exception) -> MCPError:
        message, _ = describe(exc, self.settings.address.text)
        return MCPError(types.INTERNAL_ERROR, f"{what}: {message}")

    async def tools(self) -> dict[str, WorkerTool]:
        return await fetch_tools(self.services, self.settings.filter)

    async def fingerprint(self) -> str:
        return listing_fingerprint(await self.tools())

    async def list_tools(self, ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        try:
            tools = await self.tools()
        except Exception as e:
            raise self._failure("cannot list the workers", e) from e
        return types.ListToolsResult(tools=[tool.tool() for tool in tools.values()])

    async def call_tool(self, ctx: ServerRequestContext, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            tool = await find_tool(self.services, self.settings.filter, params.name)
        except Exception as e:
            raise self._failure(f"cannot look up worker {params.name!r}", e) from e
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r} (see tools/list)")
        try:
            args = tool.encode_args(params.arguments)
        except CodecError as e:
            return answers.error(str(e))

        async def report(elapsed: float, message: str) -> None:
            try:
                await ctx.session.report_progress(elapsed, None, message)
            except Exception as e:  # progress is a courtesy: failing to send it must not end the call
                log.debug("progress of %s not sent: %r", params.name, e)

        try:
            job_id, result = await run_job(self.services, tool, args, report, self.settings.progress_interval_s)
        except ResultNotKept as e:
            return answers.error(str(e))
        except Exception as e:  # the server refused the job (a gRPC status) or could not be reached
            message, _ = describe(e, self.settings.address.text)
            return answers.error(f"worker {tool.name}: {message}")
        return answers.tool_result(tool, job_id, result)

    async def list_resources(self, ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
                             ) -> types.ListResourcesResult:
        try:
            tools = await self.tools()
        except Exception as e:
            raise self._failure("cannot list the workers", e) from e
        return types.ListResourcesResult(resources=resources.listed(tools))

    async def list_resource_templates(self, ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
                                      ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=resources.templates())

    async def read_resource(self, ctx: ServerRequestContext, params: types.ReadResourceRequestParams
                            ) -> types.ReadResourceResult:
        try:
            return await resources.read(self.services, self.settings.filter, str(params.uri))
        except MCPError:
            raise
        except Exception as e:
            raise self._failure(f"cannot read {params.uri}", e) from e

    def server(self) -> Server[Any]:
        from jobworkerp import __version__

        server: Server[Any] = Server(
            "jobworkerp",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_list_resource_templates=self.list_resource_templates,
            on_read_resource=self.read_resource,
            on_subscriptions_listen=ListenHandler(self.notifier.bus),
        )
        server.add_notification_handler("notifications/initialized", types.NotificationParams,
                                        self.notifier.on_initialized)
        return server


def initialization_options(server: Server[Any]) -> InitializationOptions:
    """What a handshake-era client is told: tools and resources lists change (both are announced)."""
    return server.create_initialization_options(NotificationOptions(tools_changed=True, resources_changed=True))
