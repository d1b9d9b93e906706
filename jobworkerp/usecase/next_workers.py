"""next_workers validation: the chain graph a worker definition makes must stay finite and small.

A job's output becomes one job for each of its worker's next workers (`lifecycle/chain.py`), so
the graph decides how many jobs one Enqueue starts. A worker naming itself runs for ever; naming
itself twice doubles its jobs at every turn (242 live jobs became 1142 in 8 s); a cycle through
other workers does the same; and even without a cycle, layers that fan out multiply (two workers
per layer, each naming both of the next layer, start 2**depth jobs). Jobs carry no chain depth
(JobData has no such field, and the proto follows upstream), so the limits are checked on the
stored graph whenever a definition changes, for every chain that runs through the changed worker.

Limits per job of any worker, counted per output item: at most MAX_CHAIN_DEPTH chained jobs one
after another, and at most MAX_CHAIN_JOBS chained jobs in all. A next worker that does not exist
is allowed (it may be created later, and a deleted one is skipped at run time); it starts no job.

Known gap: two updates racing in different processes can each pass and together close a cycle;
a check inside the storage transaction would be needed to close it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jobworkerp.errors import InvalidArgument

MAX_CHAIN_DEPTH = 32
MAX_CHAIN_JOBS = 1000
FIELD = "next_workers"

Graph = Mapping[int, Sequence[int]]  # worker id -> the ids its next_workers names


def check_links(worker_id: int | None, next_ids: Sequence[int]) -> None:
    """The list itself: positive ids, none repeated, not the worker itself."""
    seen: dict[int, int] = {}
    for i, nxt in enumerate(next_ids):
        if nxt <= 0:
            raise InvalidArgument(f"{FIELD}[{i}]", f"invalid worker id {nxt}")
        if nxt == worker_id:
            raise InvalidArgument(f"{FIELD}[{i}]", f"names worker {nxt} itself: its jobs would chain for ever")
        if nxt in seen:
            raise InvalidArgument(f"{FIELD}[{i}]", f"worker {nxt} is already listed at {FIELD}[{seen[nxt]}]; "
                                                   "each output would start two jobs of it")
        seen[nxt] = i


def _describe(path: Sequence[int], most: int = 8) -> str:
    """The workers of a cycle, shortened: a status message is no place for thousands of ids."""
    shown = [str(p) for p in path]
    if len(shown) > most:
        shown = [*shown[:most // 2], f"... ({len(path) - most} more)", *shown[-(most // 2):]]
    return " -> ".join(shown)


def _measure(graph: Graph, start: int, depth: dict[int, int], jobs: dict[int, int]) -> None:
    """Fill `depth` and `jobs` (chained jobs one job of a worker starts: longest run, total) for
    `start` and everything it reaches. Iterative: a long chain stored before these limits must not
    hit Python's recursion limit. A cycle is refused naming its workers."""
    if start in depth:
        return
    on_path: list[int] = []
    index: dict[int, int] = {}  # worker on the current path -> its position
    links_of: dict[int, list[int]] = {}
    stack: list[tuple[int, int]] = [(start, 0)]  # (worker, next link to visit)
    while stack:
        node, link = stack.pop()
        if link == 0:
            index[node] = len(on_path)
            on_path.append(node)
            links_of[node] = [n for n in graph.get(node, ()) if n in graph]  # a missing worker starts no job
        links = links_of[node]
        if link < len(links):
            stack.append((node, link + 1))
            nxt = links[link]
            if nxt in index:
                cycle = [*on_path[index[nxt]:], nxt]
                raise InvalidArgument(FIELD, f"closes a cycle of workers {_describe(cycle)}: its jobs would "
                                             "chain for ever")
            if nxt not in depth:
                stack.append((nxt, 0))
            continue
        depth[node] = max((1 + depth[n] for n in links), default=0)
        jobs[node] = sum(1 + jobs[n] for n in links)
        on_path.pop()
        del index[node]


def check_chains(graph: Graph, changed: int) -> None:
    """Refuse `graph` (the stored definitions with the change applied) when a chain through
    worker `changed` cycles or passes the limits. Only chains through it can have changed."""
    depth: dict[int, int] = {}
    jobs: dict[int, int] = {}
    upstream = _reaching(graph, changed)
    for worker in sorted(upstream):
        _measure(graph, worker, depth, jobs)
        if depth[worker] > MAX_CHAIN_DEPTH:
            raise InvalidArgument(FIELD, f"a job of worker {worker} would start a chain {depth[worker]} jobs long; "
                                         f"at most {MAX_CHAIN_DEPTH}")
        if jobs[worker] > MAX_CHAIN_JOBS:
            raise InvalidArgument(FIELD, f"a job of worker {worker} would start {jobs[worker]} chained jobs per "
                                         f"output item; at most {MAX_CHAIN_JOBS}")


def _reaching(graph: Graph, target: int) -> set[int]:
    """`target` and every worker whose chain reaches it."""
    callers: dict[int, list[int]] = {}
    for worker, links in graph.items():
        for nxt in links:
            callers.setdefault(nxt, []).append(worker)
    found = {target}
    todo = [target]
    while todo:
        for caller in callers.get(todo.pop(), ()):
            if caller not in found:
                found.add(caller)
                todo.append(caller)
    return found
