"""A unary answer — response HEADERS, the DATA frame with the message, the trailers — leaves the
server in one socket write (front/coalesce.py), so a client reads it whole in one read instead
of three. Seen from a raw HTTP/2 client over a plain socket, against the real server."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.testing.server import ServerProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(Path(tmp_path_factory.mktemp("one-write"))).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def _answer_reads(port: int, path: str, message: bytes) -> list[list[h2.events.Event]]:
    """The events of one unary call, grouped by the socket read that brought them."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    settled = False  # the server's SETTINGS read and ours acknowledged: the connection is quiet
    while not settled:
        for event in conn.receive_data(sock.recv(65536)):
            settled = settled or isinstance(event, h2.events.SettingsAcknowledged)
        sock.sendall(conn.data_to_send())
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(stream_id, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                  (":authority", f"127.0.0.1:{port}"), ("content-type", "application/grpc"),
                                  ("te", "trailers")])
    conn.send_data(stream_id, b"\x00" + struct.pack(">I", len(message)) + message, end_stream=True)
    sock.sendall(conn.data_to_send())
    reads: list[list[h2.events.Event]] = []
    while not any(isinstance(e, h2.events.StreamEnded) for read in reads for e in read):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        events = [e for e in conn.receive_data(chunk) if getattr(e, "stream_id", None) == stream_id]
        sock.sendall(conn.data_to_send())
        if events:
            reads.append(events)
    sock.close()
    return reads


@pytest.mark.parametrize("path, message", [
    ("/jobworkerp.service.WorkerService/Count", bytes(svc.CountCondition())),  # a betterproto2 answer
    ("/grpc.health.v1.Health/Check", b""),  # google.protobuf, grpclib's own service
])
def test_a_unary_answer_is_read_in_one_read(server: ServerProcess, path: str, message: bytes) -> None:
    reads = _answer_reads(server.port, path, message)
    assert len(reads) == 1, reads
    kinds = [type(e) for e in reads[0]]
    assert kinds[0] is h2.events.ResponseReceived and h2.events.DataReceived in kinds
    assert h2.events.TrailersReceived in kinds and kinds[-1] is h2.events.StreamEnded
    trailers = dict(next(e for e in reads[0] if isinstance(e, h2.events.TrailersReceived)).headers)
    assert trailers[b"grpc-status"] == b"0"
