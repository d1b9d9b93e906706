"""A thin, safe wrapper around trio-mysql: connection settings, a bounded pool, sessions.

trio-mysql 1.0.3 is the only trio-native MySQL client, but it is unmaintained and has sharp
edges (listed below). Everything the repository does goes through this module so those
edges are handled in one place:

- ``use_unicode=True`` and utf8mb4 are forced: by default VARCHAR comes back as bytes, and
  utf8 (3-byte) cannot store emoji.
- Parameters are checked *before* any I/O: only scalars of exact types are accepted. trio-mysql
  still carries PyMySQL's old ``escape_dict`` (CVE-2024-36039 class), which splices dict keys
  into SQL unescaped; a dict, set or any other container raises TypeError instead. Exact types
  also stop an ``IntEnum`` being rendered as the string ``'Priority.HIGH'``.
- A connection whose I/O was interrupted (cancellation, lost server, any non-server error) is
  closed and never returned to the pool: its protocol state is unknown. trio-mysql marks such
  a connection closed but leaks its socket (``SocketStream`` has no ``close()``), so the pool
  keeps the raw socket and closes it itself.
- A connection is never pooled while a transaction is open, so a half-done transaction
  cannot leak into the next borrower.
- ``CLIENT.FOUND_ROWS`` makes UPDATE report matched rather than changed rows, which is what
  compare-and-set and "did this id exist" need (SQLite's rowcount has the same meaning).
- Server warnings are not fetched (no extra ``SHOW WARNINGS`` round trip, no Python warnings
  for harmless notes); strict SQL mode turns real data problems into errors instead.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio
import trio_mysql
import trio_mysql.cursors
from trio_mysql.constants import CLIENT, SERVER_STATUS

from jobworkerp.config import Config
from jobworkerp.errors import StorageClosed

T = TypeVar("T")
Row = tuple[Any, ...]

# Exact types only (see module docstring); bool is listed because escape_bool renders 0/1.
_SCALAR_TYPES = frozenset({type(None), bool, int, float, str, bytes, bytearray})

# Strict: over-long text or out-of-range numbers fail instead of being silently truncated;
# NO_ENGINE_SUBSTITUTION: a missing InnoDB fails table creation instead of using MyISAM;
# NO_AUTO_VALUE_ON_ZERO: an explicit id 0 is stored as 0 (as SQLite does), not auto-assigned.
SQL_MODE = "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO,ERROR_FOR_DIVISION_BY_ZERO"

# An idle connection older than this is pinged before reuse: the server drops idle clients
# after wait_timeout, and a dead pooled connection would fail the next caller's query.
IDLE_PING_AFTER_SECONDS = 30.0


def check_params(params: Sequence[Any]) -> tuple[Any, ...]:
    """The query parameters as a tuple, or TypeError when anything is not a plain scalar."""
    if not isinstance(params, (tuple, list)):
        raise TypeError(f"query parameters must be a tuple or list, not {type(params).__name__}")
    for value in params:
        if type(value) not in _SCALAR_TYPES:
            raise TypeError(
                f"refusing query parameter of type {type(value).__name__}: only None, bool, int, float, "
                "str and bytes are sent to MySQL (trio-mysql escapes containers unsafely)"
            )
    return tuple(params)


class _QuietCursor(trio_mysql.cursors.Cursor):
    """A buffered cursor that does not issue SHOW WARNINGS after statements with notes."""

    _defer_warnings = True


@dataclass(frozen=True)
class MysqlTls:
    """TLS to the server (MYSQL_SSL, MYSQL_SSL_CA, MYSQL_SSL_CERT/KEY, MYSQL_SSL_VERIFY_IDENTITY).

    We build the SSLContext ourselves instead of passing trio-mysql's ``ssl_ca`` & co: given only
    a CA, trio-mysql does not verify the server certificate at all (``verify_mode`` CERT_NONE
    unless ``ssl_verify_cert`` is also set), which is TLS that any interceptor can answer."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify_identity: bool = True

    @classmethod
    def from_config(cls, config: Config) -> MysqlTls | None:
        if not config.mysql_ssl:
            return None
        return cls(config.mysql_ssl_ca, config.mysql_ssl_cert, config.mysql_ssl_key,
                   config.mysql_ssl_verify_identity)

    def context(self) -> ssl.SSLContext:
        """Always verifies the certificate chain (against ``ca``, else the system store); checks
        the host name unless ``verify_identity`` is off (a server reached by an address its
        certificate does not name)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.verify_identity
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        return context


class _TlsOnlyConnection(trio_mysql.Connection):
    """A connection that refuses a server without TLS before it sends any credentials.

    trio-mysql, asked for TLS, silently goes on in plaintext when the server does not offer it;
    a downgrade by whoever sits on the path would then go unnoticed."""

    async def _request_authentication(self) -> None:
        if not self.server_capabilities & CLIENT.SSL:
            raise trio_mysql.err.OperationalError(
                2026, f"MySQL at {self.host}:{self.port} does not offer TLS, which MYSQL_SSL* asks for")
        await super()._request_authentication()


@dataclass(frozen=True)
class MysqlParams:
    """Where and as whom to connect; ``unix_socket`` wins over host/port when set."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    database: str | None = None
    unix_socket: str | None = None
    connect_timeout: int = 10
    tls: MysqlTls | None = None

    def describe(self) -> str:
        """Human-readable address for error messages (never includes the password)."""
        where = f"unix socket {self.unix_socket}" if self.unix_socket else f"{self.host}:{self.port}"
        return f"MySQL at {where} as {self.user!r}"

    def connection(self) -> trio_mysql.Connection:
        """An unconnected trio-mysql connection with the safety settings forced (and TLS when
        configured)."""
        connection_class = _TlsOnlyConnection if self.tls else trio_mysql.Connection
        return connection_class(
            ssl=self.tls.context() if self.tls else None,
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            unix_socket=self.unix_socket,
            charset="utf8mb4",
            use_unicode=True,
            autocommit=True,
            client_flag=CLIENT.FOUND_ROWS,
            sql_mode=SQL_MODE,
            connect_timeout=self.connect_timeout,
            cursorclass=_QuietCursor,
            program_name="jobworkerp",
        )


@dataclass
class _Pooled:
    """A live connection plus what the pool needs to close it for sure."""

    conn: trio_mysql.Connection
    raw_socket: Any
    generation: int
    last_used: float = field(default_factory=trio.current_time)

    def discard(self) -> None:
        """Close without a QUIT round trip (safe under cancellation; never awaits)."""
        self.conn.close()
        if self.raw_socket is not None:
            self.raw_socket.close()

    async def quit(self) -> None:
        """Polite close (COM_QUIT), bounded and shielded so shutdown cannot hang on it."""
        with trio.move_on_after(1) as scope:
            scope.shield = True
            await self.conn.aclose()
        self.discard()


def _raw_socket(conn: trio_mysql.Connection) -> Any:
    """The trio socket under a connection's stream (trio-mysql keeps no other handle); under
    TLS the stream is an SSLStream over the SocketStream."""
    stream = getattr(conn, "_sock", None)
    stream = getattr(stream, "transport_stream", stream)
    return getattr(stream, "socket", stream)


async def _connect(params: MysqlParams, generation: int) -> _Pooled:
    """Connect and log in. trio-mysql "closes" its stream with a ``close()`` SocketStream
    does not have, both when login fails and when it force-closes a broken connection; we
    close the raw socket ourselves so no descriptor leaks (no ResourceWarning either)."""
    conn = params.connection()
    try:
        await conn.connect()
    except BaseException:
        raw = _raw_socket(conn)
        if raw is not None:
            raw.close()
        raise
    return _Pooled(conn=conn, raw_socket=_raw_socket(conn), generation=generation)


class Session:
    """One pooled connection lent to one task; every statement goes through here."""

    def __init__(self, pooled: _Pooled) -> None:
        self._pooled = pooled
        self.broken = False
        # The server side went away (not a local cancellation): idle siblings are suspect too.
        self.lost = False

    @property
    def connection_usable(self) -> bool:
        """True when the connection may go back to the pool (open, idle, no transaction)."""
        conn = self._pooled.conn
        return not self.broken and conn.open and not conn.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS

    async def _guarded(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run one protocol exchange; mark the session broken when it did not finish cleanly.

        A server-reported error (duplicate key, syntax, lock timeout) leaves the protocol in
        a known state and the connection reusable; anything else (cancellation, a lost
        server, a client-side failure halfway through) does not.
        """
        try:
            return await op()
        except trio_mysql.err.MySQLError:
            if not self._pooled.conn.open:
                self.broken = self.lost = True
            raise
        except BaseException:
            self.broken = True
            raise

    async def _execute(self, sql: str, params: Sequence[Any]) -> trio_mysql.cursors.Cursor:
        args = check_params(params) if params else None
        cursor = self._pooled.conn.cursor()
        await self._guarded(lambda: cursor.execute(sql, args))
        return cursor

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = await self._execute(sql, params)
        return list(await cursor.fetchall())

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cursor = await self._execute(sql, params)
        return await cursor.fetchone()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a write; returns the matched row count (FOUND_ROWS semantics)."""
        cursor = await self._execute(sql, params)
        return cursor.rowcount

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT; returns the AUTO_INCREMENT id it generated."""
        cursor = await self._execute(sql, params)
        return cursor.lastrowid

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Bulk INSERT: trio-mysql rewrites it into multi-row INSERTs of at most ~1 MB each.

        Callers wanting all-or-nothing wrap this in :meth:`transaction`.
        """
        checked = [check_params(row) for row in rows]
        if not checked:
            return 0
        cursor = self._pooled.conn.cursor()
        await self._guarded(lambda: cursor.executemany(sql, checked))
        return cursor.rowcount

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """BEGIN … COMMIT; an error in the body rolls back and re-raises.

        On cancellation (or any BaseException) nothing is awaited: the session is marked
        broken, the pool closes the connection and the server rolls the transaction back
        when the client goes away.
        """
        await self.execute("BEGIN")
        try:
            yield
        except Exception:
            if not self.broken:
                await self.execute("ROLLBACK")
            raise
        except BaseException:
            self.broken = True
            raise
        await self.execute("COMMIT")


class MysqlPool:
    """At most ``max_connections`` connections, reused LIFO, opened lazily.

    ``open``/``aclose`` may alternate: a connection lent out before ``aclose`` is closed on
    return instead of being pooled (generation check), so a reopened pool starts clean.
    """

    def __init__(self, params: MysqlParams, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.params = params
        self.max_connections = max_connections
        self._slots = trio.Semaphore(max_connections)
        self._idle: list[_Pooled] = []
        self._generation = 0
        self._open = False
        self.in_use = 0
        self.connections_opened = 0

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def idle(self) -> int:
        return len(self._idle)

    def open(self) -> None:
        """Accept sessions again (connections are made on demand)."""
        if not self._open:
            self._generation += 1
            self._open = True

    async def aclose(self) -> None:
        """Refuse new sessions and close the idle connections; lent ones close on return."""
        self._open = False
        idle, self._idle = self._idle, []
        for pooled in idle:
            await pooled.quit()

    async def _checkout(self) -> _Pooled:
        """An idle connection that still answers, or a new one."""
        while self._idle:
            pooled = self._idle.pop()
            if trio.current_time() - pooled.last_used < IDLE_PING_AFTER_SECONDS:
                return pooled
            try:
                await pooled.conn.ping(reconnect=False)
            except BaseException as err:
                pooled.discard()
                if not isinstance(err, Exception):
                    raise
                continue
            return pooled
        pooled = await _connect(self.params, self._generation)
        self.connections_opened += 1
        return pooled

    def _checkin(self, pooled: _Pooled, session: Session) -> None:
        """Pool the connection when it is provably clean, otherwise close it.

        A connection lost on the server side (restart, wait_timeout, KILL) usually means
        the idle ones are dead as well; dropping them now spares the next callers one
        failed query each.
        """
        if session.lost:
            idle, self._idle = self._idle, []
            for other in idle:
                other.discard()
        if self._open and pooled.generation == self._generation and session.connection_usable:
            pooled.last_used = trio.current_time()
            self._idle.append(pooled)
        else:
            pooled.discard()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """Borrow a connection for one operation; waits while all slots are in use.

        No extra bookkeeping is needed for a body that fails between statements: the
        connection is then idle and clean, unless a transaction is open, which check-in sees.
        """
        if not self._open:
            raise StorageClosed(f"{self.params.describe()}: repository is closed")
        async with self._slots:
            if not self._open:
                raise StorageClosed(f"{self.params.describe()}: repository is closed")
            pooled = await self._checkout()
            session = Session(pooled)
            self.in_use += 1
            try:
                yield session
            finally:
                self.in_use -= 1
                self._checkin(pooled, session)
