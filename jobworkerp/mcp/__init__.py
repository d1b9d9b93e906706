"""`jobworkerp mcp`: the workers of a jobworkerp server as Model Context Protocol tools.

A client of the server over gRPC (like `jobworkerp-client`, whose connection and protobuf JSON
codec it uses), serving MCP over stdio or streamable HTTP with the official `mcp` SDK:
`main.py` (entry, transports' lifetimes), `settings.py` (options and MCP_* variables),
`server.py` (request handlers), `catalog.py` (workers -> tools), `schema.py` (args message ->
JSON Schema), `jobs.py` (a call's job: enqueue, wait, progress, delete on cancel), `answers.py`
(result -> tool result), `resources.py` (stored results), `changes.py` (list_changed
notifications), `http.py` (streamable HTTP behind a bearer token).
"""
