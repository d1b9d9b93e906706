"""jobworkerp: a job worker system that speaks the jobworkerp v0.7 gRPC protocol."""

__version__ = "0.1.0"
