"""Command-line entry points: the server (`jobworkerp`) and the client (`jobworkerp-client`)."""
