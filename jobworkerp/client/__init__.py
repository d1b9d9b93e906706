"""`jobworkerp.client`: the jobworkerp server from Python (asyncio; trio through trio-asyncio;
`BlockingClient` for scripts and notebooks). See README "Python API".

    async with Client("127.0.0.1:9000") as client:
        await client.create_worker("echo", runner="COMMAND", settings={"name": "echo"})
        print(await client.run("echo", {"args": ["hello"]}))   # [b'hello\\n']

The CLI (`jobworkerp-client`) is built on this package's codec and connection.
"""

from jobworkerp.client.blocking import BlockingClient, BlockingJobHandle
from jobworkerp.client.client import Client
from jobworkerp.client.connection import TlsFiles
from jobworkerp.client.errors import (
    AlreadyExists,
    ClientError,
    DeadlineExceeded,
    InvalidArgument,
    JobFailed,
    NoResult,
    NotFound,
    ResourceExhausted,
    RunnerNotFound,
    Unauthenticated,
    Unavailable,
    WorkerNotFound,
)
from jobworkerp.client.jobs import JobHandle
from jobworkerp.client.models import JobResult, RetryPolicy, Runner, Worker

__all__ = [
    "AlreadyExists", "BlockingClient", "BlockingJobHandle", "Client", "ClientError", "DeadlineExceeded",
    "InvalidArgument", "JobFailed", "JobHandle", "JobResult", "NoResult", "NotFound", "ResourceExhausted",
    "RetryPolicy", "Runner", "RunnerNotFound", "TlsFiles", "Unauthenticated", "Unavailable", "Worker",
    "WorkerNotFound",
]
