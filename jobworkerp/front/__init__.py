"""The gRPC front: grpclib services hosted inside trio through a single asyncio bridge."""
