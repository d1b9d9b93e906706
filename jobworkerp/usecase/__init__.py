"""The operations behind the gRPC services, in trio, independent of gRPC types' transport."""
