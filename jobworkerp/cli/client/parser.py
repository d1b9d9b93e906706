"""The `jobworkerp-client` command tree (argparse, stdlib only).

Why argparse: it ships with Python (nothing to install, nothing to import at start-up), it does
sub-command trees and per-option help, and global options placed before the group keep upstream's
short options (`job enqueue -a ARGS`, `job-result listen -t MS`) free of clashes with `-a/--address`
and `-t/--timeout`, exactly as in upstream's clap-based client.

Every sub-command records `handler="module:function"`; the module is imported only when the
command runs, so `--help` never loads gRPC or protobuf.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from jobworkerp.cli.client import values as v

DEFAULT_ADDRESS = "http://localhost:9000"
AUTH_ENV = "JOBWORKERP_AUTH_TOKEN"

DESCRIPTION = "Command-line client for a jobworkerp server (runners, workers, jobs, results)."
EPILOG = (
    "Global options go before the group, e.g. `jobworkerp-client -a http://host:9000 --json worker list`.\n"
    "Exit status: 0 ok; 1 the server answered with an error or the item was not found; "
    "2 bad usage or bad input (JSON, unknown field); 3 server not reachable; 130 interrupted."
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks and gives option columns room."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=40)


AddOptions = Callable[[argparse.ArgumentParser], object]


def _command(group: argparse._SubParsersAction, name: str, help_text: str, handler: str,
             add_options: AddOptions | None = None) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_text, description=help_text, formatter_class=_Formatter)
    parser.set_defaults(handler=handler)
    if add_options is not None:
        add_options(parser)
    _add_late_globals(parser)
    return parser


def _add_late_globals(parser: argparse.ArgumentParser) -> None:
    """`--json` also works after the command (SUPPRESS: never overrides a value given before it)."""
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON object per line instead of tables")


def _id(what: str) -> AddOptions:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("-i", "--id", type=v.positive_id, required=True, help=f"{what} id")
    return add


def _paging(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--offset", type=v.non_negative_int, help="skip this many items first")
    p.add_argument("-l", "--limit", type=v.non_negative_int, help="return at most this many items")


# ------------------------------------------------------------------------------------------ runner

def _runner_group(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser("runner", help="runners: the kinds of work the server can do",
                          description="Runners are built in (COMMAND, HTTP_REQUEST, ...) or plugins.")
    g = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    m = "jobworkerp.cli.client.cmd_runner"
    _command(g, "find", "show one runner with its settings/args/result .proto texts", f"{m}:find", _id("runner"))
    _command(g, "list", "list runners", f"{m}:list_", _paging)
    _command(g, "delete", "delete a plugin runner (built-ins cannot be deleted)", f"{m}:delete", _id("runner"))
    _command(g, "count", "print how many runners exist", f"{m}:count")


# ------------------------------------------------------------------------------------------ worker

def _worker_definition(p: argparse.ArgumentParser, *, create: bool) -> None:
    """Options shared by `worker create` and `worker update` (update: all optional, None = keep)."""
    keep = "" if create else " (update: unchanged when omitted)"
    p.add_argument("-n", "--name", required=create, help="unique worker name" + keep)
    p.add_argument("-r", "--runner-id", type=v.positive_id, required=create,
                   help="runner id (see `runner list`; 1 = COMMAND)" + keep)
    p.add_argument("-s", "--settings", required=create, metavar="JSON",
                   help="runner settings as JSON (the runner's settings message; raw text if it has none)" + keep)
    p.add_argument("-p", "--periodic", type=v.non_negative_ms, default=0 if create else None, metavar="MS",
                   help="re-run every MS milliseconds; 0 = not periodic" + (" (default 0)" if create else keep))
    p.add_argument("-c", "--channel", help="queue channel; empty = the default channel" + keep)
    p.add_argument("-q", "--queue-type", type=v.enum_choice(v.QUEUE_TYPES), default="NORMAL" if create else None,
                   metavar="TYPE",
                   help="NORMAL, WITH_BACKUP or FORCED_RDB" + (" (default NORMAL)" if create else keep))
    p.add_argument("--response-type", type=v.enum_choice(v.RESPONSE_TYPES), default="DIRECT" if create else None,
                   metavar="TYPE",
                   help="NO_RESULT, DIRECT or LISTEN_AFTER" + (" (default DIRECT, as upstream)" if create else keep))
    p.add_argument("--store-success", action=argparse.BooleanOptionalAction, default=False if create else None,
                   help="store results of successful runs" + keep)
    p.add_argument("--store-failure", action=argparse.BooleanOptionalAction, default=False if create else None,
                   help="store results of failed runs" + keep)
    p.add_argument("--next-workers", type=v.id_list, nargs="+", metavar="IDS",
                   help="worker ids to chain on success (comma or space separated; '' = none)" + keep)
    p.add_argument("--use-static", action=argparse.BooleanOptionalAction, default=False if create else None,
                   help="reuse pre-loaded runner instances" + keep)
    p.add_argument("--retry-type", type=v.enum_choice(v.RETRY_TYPES), metavar="TYPE",
                   help="NONE, EXPONENTIAL, LINEAR or CONSTANT (default EXPONENTIAL when any retry option is given)"
                   + keep)
    p.add_argument("--retry-interval", type=v.non_negative_ms, metavar="MS",
                   help="first retry delay in ms (default 1000)" + keep)
    p.add_argument("--max-retry", type=v.non_negative_int, metavar="N",
                   help="retries after the first attempt; 0 = none (default 3)" + keep)
    p.add_argument("--max-interval", type=v.non_negative_ms, metavar="MS",
                   help="cap on any retry delay in ms; 0 = no cap (default 0)" + keep)
    p.add_argument("--retry-basis", type=v.retry_basis, metavar="X",
                   help="growth factor of EXPONENTIAL, >= 1.0 (default 2.0)" + keep)


def _worker_group(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser("worker", help="workers: a runner plus its settings and delivery options",
                          description="A worker is what jobs are enqueued to.")
    g = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    m = "jobworkerp.cli.client.cmd_worker"
    _command(g, "create", "define a worker", f"{m}:create", lambda p: _worker_definition(p, create=True))
    _command(g, "find", "show one worker (settings decoded as JSON)", f"{m}:find", _id("worker"))
    _command(g, "find-by-name", "show the worker with this name", f"{m}:find_by_name",
             lambda p: p.add_argument("-n", "--name", required=True, help="worker name"))

    def update_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("-i", "--id", type=v.positive_id, required=True, help="id of the worker to change")
        _worker_definition(p, create=False)

    _command(g, "list", "list workers", f"{m}:list_", _paging)
    _command(g, "update", "change the given options of a worker, keep the rest", f"{m}:update", update_options)
    _command(g, "delete", "delete a worker", f"{m}:delete", _id("worker"))
    _command(g, "count", "print how many workers exist", f"{m}:count")


# --------------------------------------------------------------------------------------------- job

def _enqueue_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-w", "--worker", type=v.worker_ref, required=True, metavar="ID_OR_NAME",
                   help="worker id (an integer) or worker name")
    p.add_argument("-a", "--args", metavar="JSON",
                   help="job args as JSON in the runner's args message (raw text if it has none; default empty)")
    p.add_argument("-u", "--uniq-key", help="reject the job while another with this key exists")
    p.add_argument("-r", "--run-after-time", type=v.run_after_time, metavar="MS",
                   help=f"run at this epoch ms; values below {v.RELATIVE_TIME_LIMIT_MS:.0e} mean ms from now; "
                        "0 = at once")
    p.add_argument("-p", "--priority", type=v.priority, metavar="high|medium|low",
                   help="queue priority (default medium)")
    p.add_argument("-t", "--timeout", dest="job_timeout", type=v.non_negative_ms, metavar="MS",
                   help="job run timeout in ms; 0 = none (omitted: the server's JOB_DEFAULT_TIMEOUT_MS, "
                        "one hour unless set)")


def _bulk_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--file", required=True, metavar="FILE",
                   help="JSON lines, one job each: {\"worker\": ID_OR_NAME, \"args\": {...}, \"priority\": \"high\", "
                        "\"run_after_time\": MS, \"uniq_key\": \"...\", \"timeout\": MS} (all but worker optional); "
                        "- reads stdin")
    p.add_argument("-b", "--batch-size", type=v.positive_count, default=500, metavar="N",
                   help="jobs per EnqueueBatch call (default 500; the server refuses more than its "
                        "JOB_ENQUEUE_BATCH_MAX_ITEMS, 1000 unless set)")


def _job_group(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser("job", help="jobs: enqueue work to a worker, inspect or delete queued jobs",
                          description="Jobs run once on a worker (or periodically on a periodic worker).")
    g = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    m = "jobworkerp.cli.client.cmd_job"
    _command(g, "enqueue", "enqueue a job; DIRECT workers print the result", f"{m}:enqueue", _enqueue_options)
    _command(g, "enqueue-for-stream", "enqueue a job and print its output as it is produced, then its result",
             "jobworkerp.cli.client.cmd_stream:enqueue_for_stream", _enqueue_options)
    _command(g, "enqueue-bulk", "enqueue the jobs of a JSON-lines file in batches; one line of output per job",
             "jobworkerp.cli.client.cmd_bulk:enqueue_bulk", _bulk_options)
    _command(g, "find", "show one stored job (scheduled, periodic or backed-up)", f"{m}:find", _id("job"))
    _command(g, "list", "list stored jobs", f"{m}:list_", _paging)
    _command(g, "delete", "delete a job: dequeue it, stop a periodic one, cancel a running one",
             f"{m}:delete", _id("job"))
    _command(g, "count", "print how many stored jobs exist", f"{m}:count")


# -------------------------------------------------------------------------------------- job-result

def _worker_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-w", "--worker", type=v.worker_ref, required=True, metavar="ID_OR_NAME",
                   help="worker id (an integer) or worker name")


def _listen_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-j", "--job-id", type=v.positive_id, required=True, help="job to wait for")
    _worker_option(p)
    p.add_argument("-t", "--timeout", dest="listen_timeout", type=v.non_negative_ms, metavar="MS",
                   help="give up after MS ms; 0 = never (omitted: server default, one day)")


def _listen_stream_options(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("-w", "--worker", type=v.worker_ref, metavar="ID_OR_NAME",
                       help="worker id (an integer) or worker name: print each of its results")
    which.add_argument("-j", "--job-id", type=v.positive_id,
                       help="job to follow: its output so far and as it comes (a job enqueued for streaming), "
                            "then its result")
    p.add_argument("-t", "--timeout", dest="listen_timeout", type=v.non_negative_ms, metavar="MS",
                   help="with --job-id: give up after MS ms; 0 = never (omitted: server default, one day)")


def _result_group(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser("job-result", help="job results: find, wait for, stream, list, delete",
                          description="Results are stored when the worker's store flags say so.")
    g = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    m = "jobworkerp.cli.client.cmd_result"
    _command(g, "find", "show one stored result", f"{m}:find", _id("job result"))
    _command(g, "listen", "wait for the result of a job of a LISTEN_AFTER worker and print it",
             f"{m}:listen", _listen_options)
    _command(g, "listen-stream", "print every result of a worker as it finishes, until Ctrl-C (--worker); or "
             "one job's output as it is produced, then its result (--job-id)", f"{m}:listen_stream",
             _listen_stream_options)
    _command(g, "list", "list stored results", f"{m}:list_", _paging)
    _command(g, "list-by-job-id", "list the stored results of one job (one per attempt or periodic run)",
             f"{m}:list_by_job_id",
             lambda p: p.add_argument("-j", "--job-id", type=v.positive_id, required=True, help="job id"))
    _command(g, "delete", "delete a stored result", f"{m}:delete", _id("job result"))
    _command(g, "count", "print how many stored results exist", f"{m}:count")


def _status_group(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser("job-status", help="job status: PENDING / RUNNING / WAIT_RESULT of unfinished jobs",
                          description="A job has a status only until it finishes.")
    g = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    m = "jobworkerp.cli.client.cmd_status"
    _command(g, "find", "show the status of one job", f"{m}:find", _id("job"))
    _command(g, "list", "list every unfinished job with its status", f"{m}:list_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobworkerp-client", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=_Formatter)
    parser.add_argument("-a", "--address", default=DEFAULT_ADDRESS,
                        help=f"server address, http://host:port or https://host:port (default {DEFAULT_ADDRESS})")
    parser.add_argument("-t", "--timeout", dest="call_timeout", type=v.non_negative_ms, metavar="MS",
                        help="deadline for every gRPC call in ms (default: none)")
    parser.add_argument("--auth-token", default=os.environ.get(AUTH_ENV) or None,
                        help=f"sent as `jobworkerp-auth` metadata (default: ${AUTH_ENV})")
    parser.add_argument("--ca-cert", metavar="FILE",
                        help="https:// only: trust the server certificate if this PEM CA signed it "
                             "(default: the system CA store)")
    parser.add_argument("--client-cert", metavar="FILE",
                        help="https:// only: PEM client certificate for servers that require one (with --client-key)")
    parser.add_argument("--client-key", metavar="FILE", help="https:// only: PEM key of --client-cert")
    parser.add_argument("--json", action="store_true", default=False,
                        help="print one JSON object per line instead of tables")
    from jobworkerp import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} (jobworkerp v0.7 protocol)",
                        help="print the client version and exit")
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    _runner_group(groups)
    _worker_group(groups)
    _job_group(groups)
    _result_group(groups)
    _status_group(groups)
    return parser
