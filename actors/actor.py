"""A minimal trio actor: a bounded mailbox served in order by one task.

The mailbox capacity is the backpressure mechanism: when the actor falls
behind, ``tell``/``ask`` block (or ``tell_nowait`` refuses) instead of letting
an unbounded queue hide the overload.
"""

from __future__ import annotations

import logging
from typing import Generic, TypeVar

import outcome
import trio

__all__ = ["Actor", "ActorStopped"]

Msg = TypeVar("Msg")
Reply = TypeVar("Reply")

logger = logging.getLogger("actors.actor")


class ActorStopped(RuntimeError):
    """The actor stopped (was cancelled) after taking an ``ask`` but before replying.

    Without this an asker would wait forever on a reply that can no longer come.
    """


class _Envelope(Generic[Msg, Reply]):
    """One mailbox entry; ``reply`` is None for ``tell``.

    ``abandoned`` is set by an asker that stopped waiting, so the actor can skip
    the message instead of doing work nobody will read.
    """

    __slots__ = ("abandoned", "msg", "reply")

    def __init__(self, msg: Msg, reply: trio.MemorySendChannel[outcome.Outcome[Reply]] | None) -> None:
        self.msg = msg
        self.reply = reply
        self.abandoned = False


class Actor(Generic[Msg, Reply]):
    """Bounded mailbox (capacity = backpressure); one task serves it in order.

    Subclasses override :meth:`handle`. Run the actor with ``await
    nursery.start(actor.run)`` (or as a supervised child: ``run`` has the
    ``task_status`` signature a :class:`~actors.supervisor.ChildSpec` expects).
    The mailbox outlives ``run``: if ``run`` crashes and is restarted, queued
    messages are served by the new run.
    """

    def __init__(self, capacity: int = 64, name: str = "actor") -> None:
        self.name = name
        send, receive = trio.open_memory_channel[_Envelope[Msg, Reply]](capacity)
        self._mailbox_send = send
        self._mailbox_receive = receive
        self._running = False

    async def handle(self, msg: Msg) -> Reply:
        """Process one message; subclasses override this."""
        raise NotImplementedError(f"{type(self).__name__}.handle() is not implemented")

    async def tell(self, msg: Msg) -> None:
        """Fire and forget; waits while the mailbox is full (backpressure)."""
        await self._mailbox_send.send(_Envelope(msg, None))

    def tell_nowait(self, msg: Msg) -> None:
        """Fire and forget without waiting; raises ``trio.WouldBlock`` when full."""
        self._mailbox_send.send_nowait(_Envelope(msg, None))

    async def ask(self, msg: Msg) -> Reply:
        """Send ``msg`` and wait for the reply.

        An exception raised by ``handle`` is re-raised here, in the caller.
        """
        reply_send, reply_receive = trio.open_memory_channel[outcome.Outcome[Reply]](1)
        envelope: _Envelope[Msg, Reply] = _Envelope(msg, reply_send)
        with reply_receive:
            try:
                await self._mailbox_send.send(envelope)
                result = await reply_receive.receive()
            except trio.EndOfChannel:
                raise ActorStopped(f"actor {self.name!r} stopped before replying") from None
            finally:
                # Harmless after a reply; after a cancel it tells the actor to skip us.
                envelope.abandoned = True
        return result.unwrap()

    def close(self) -> None:
        """Accept no new messages; ``run`` returns once the mailbox is drained."""
        self._mailbox_send.close()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the mailbox until :meth:`close`.

        An exception from ``handle`` for an ``ask`` goes back to the asker and
        the actor keeps serving; for a ``tell`` nobody could observe it, so it
        propagates out of ``run`` ("let it crash") for a supervisor to act on.
        """
        if self._running:
            raise RuntimeError(f"actor {self.name!r} is already running")
        self._running = True
        try:
            task_status.started()
            async for envelope in self._mailbox_receive:
                await self._serve(envelope)
        finally:
            self._running = False

    async def _serve(self, envelope: _Envelope[Msg, Reply]) -> None:
        """Handle one envelope and route its result (see ``run`` for the rules)."""
        reply = envelope.reply
        if reply is None:
            await self.handle(envelope.msg)
            return
        if envelope.abandoned:
            reply.close()
            return
        try:
            value = await self.handle(envelope.msg)
        except Exception as exc:
            self._send_reply(reply, outcome.Error(exc))
        except BaseException:
            # Cancelled (or KeyboardInterrupt): close so the asker gets ActorStopped.
            reply.close()
            raise
        else:
            self._send_reply(reply, outcome.Value(value))

    def _send_reply(
        self, reply: trio.MemorySendChannel[outcome.Outcome[Reply]], result: outcome.Outcome[Reply]
    ) -> None:
        """Deliver a reply without ever blocking or failing on a departed asker."""
        try:
            reply.send_nowait(result)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            logger.debug("actor %r: asker left before the reply", self.name)
        finally:
            reply.close()
