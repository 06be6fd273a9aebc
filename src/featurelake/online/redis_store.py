"""The Redis online store: one hash per group version and entity, read and written in pipelines.

Key: `{namespace}:{group}@{version}:{entity id}`. Fields: `@ts` and `@ing` (event and ingestion
time, epoch microseconds) and one field per feature holding a typed value (`online.codec`).

Writes go through a Lua compare-and-set, loaded once with SCRIPT LOAD and called with EVALSHA
(one call per few hundred entities) inside a pipeline, so the event-time check happens
atomically on the server without an extra round trip. Keys expire `ttl` after their last
write when the group has a ttl.

Commands are packed here, straight into the Redis protocol, and sent on a pooled redis-py
connection: a pipeline without redis-py's per-argument packing cost, which would otherwise
dominate both 100-entity reads and sync writes. Write calls are sent while the next is being
packed, so the server works while Python encodes. A sync's rows (`write_arrow`) are encoded
from their Arrow columns (`online.redis_rows`) a chunk at a time, and the replies of a chunk are
read once the next one is sent, on one connection per writer (the driver, or each Spark task
writing from an executor: `remote()` gives the settings that open the store there).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any, Unpack
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.retry import Retry

from featurelake.online.base import (
    ABSENT,
    ColumnBatch,
    OnlineRecord,
    OnlineStore,
    ReadRequest,
    StoredRow,
    StoredValue,
    StoreOptions,
    WriteRequest,
)
from featurelake.online.codec import bulk, column_bulk_encoder, decode, encode
from featurelake.online.redis_rows import EncodedRows, encode_rows
from featurelake.schema import FeatureGroupSchema

TS_FIELD = "@ts"
HISTORY_INFIX = "#h:"
INGESTED_FIELD = "@ing"
SCRIPT_KEYS = 250
ARROW_CHUNK_ROWS = 5_000
CHUNKS_IN_FLIGHT = 2
DELETE_CHUNK = 1_000

# One call sets many entities that carry the same fields. KEYS: the hashes.
# ARGV: ttl ms (0 = none), force (1/0), history size h (0 = none), n, n field names, then per
# key: event us, ingested us and n values. Returns one character per key: '1' written, '0'
# rejected as older. With h > 0 each written value gets the next version of its feature
# (hash field '@v:<feature>') and is pushed onto the list '<key>#h:<feature>' as
# 'version:event us:value', trimmed to the newest h.
COMPARE_AND_SET = """
local ttl = ARGV[1]
local force = ARGV[2] == '1'
local h = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local call = redis.call
local fields = {'@ts', 0, '@ing', 0}
for j = 1, n do fields[3 + 2 * j] = ARGV[4 + j] end
local out = {}
local a = 5 + n
for i, key in ipairs(KEYS) do
  local ts, ing = ARGV[a], ARGV[a + 1]
  local newer, existed = true, force
  if not force then
    local current = call('HMGET', key, '@ts', '@ing')
    if current[1] then
      existed = true
      local t, stored = tonumber(ts), tonumber(current[1])
      if t < stored or (t == stored and current[2] and tonumber(ing) < tonumber(current[2])) then
        newer = false
      end
    end
  end
  if newer then
    fields[2] = ts
    fields[4] = ing
    for j = 1, n do fields[4 + 2 * j] = ARGV[a + 1 + j] end
    call('HSET', key, unpack(fields))
    if ttl ~= '0' then
      call('PEXPIRE', key, ttl)
    elseif existed then
      call('PERSIST', key)
    end
    if h > 0 then
      for j = 1, n do
        local name = ARGV[4 + j]
        local version = call('HINCRBY', key, '@v:' .. name, 1)
        local list = key .. '#h:' .. name
        call('LPUSH', list, version .. ':' .. ts .. ':' .. ARGV[a + 1 + j])
        call('LTRIM', list, 0, h - 1)
        if ttl ~= '0' then call('PEXPIRE', list, ttl) end
      end
    end
    out[i] = '1'
  else
    out[i] = '0'
  end
  a = a + 2 + n
end
return table.concat(out)
"""

# Entities of one group that carry the same fields, values already encoded.
_Encoded = tuple[list[str], list[int], list[int], tuple[str, ...], list[list[bytes]]]


@dataclass(frozen=True)
class RedisRemote:
    """What opens a `RedisOnlineStore` in another process (a Spark executor)."""

    url: str
    namespace: str
    timeout_ms: int
    history_size: int

    def open(self) -> RedisOnlineStore:
        return RedisOnlineStore(
            self.url,
            namespace=self.namespace,
            timeout_ms=self.timeout_ms,
            history_size=self.history_size,
            max_connections=4,
        )


class RedisOnlineStore(OnlineStore):
    """Latest values per entity in a Redis server, shared by every process that serves them."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        timeout_ms: int = 500,
        namespace: str = "fl",
        max_connections: int = 32,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(**options)
        self.url = url
        self.namespace = namespace
        self.timeout_ms = timeout_ms
        seconds = timeout_ms / 1000.0
        # Blocking: with every connection busy, a caller waits (up to the timeout) for one
        # instead of failing at once.
        self._pool = redis.BlockingConnectionPool.from_url(
            url,
            timeout=seconds,
            socket_timeout=seconds,
            socket_connect_timeout=seconds,
            max_connections=max_connections,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._sha: bytes | None = None
        self._templates: dict[tuple[str, int, tuple[str, ...]], tuple[bytes, bytes, bytes]] = {}

    @property
    def target(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        safe = urlunsplit((parts.scheme, host + port, parts.path, "", ""))
        return f"{safe}#{self.namespace}"

    def remote(self) -> RedisRemote:
        return RedisRemote(self.url, self.namespace, self.timeout_ms, self.history_size)

    def key(self, schema: FeatureGroupSchema, entity: str) -> str:
        """The Redis key of an entity of a group version."""
        return f"{self.namespace}:{schema.name}@{schema.version}:{entity}"

    @property
    def client(self) -> redis.Redis:
        """The pooled redis-py client (for diagnostics and benchmarks)."""
        return self._client

    def _is_unavailable(self, error: BaseException) -> bool:
        return isinstance(
            error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
        ) or super()._is_unavailable(error)

    # -- writes --------------------------------------------------------------------------------

    def _script_sha(self) -> bytes:
        if self._sha is None:
            self._sha = str(self._client.script_load(COMPARE_AND_SET)).encode()
        return self._sha

    def _write(self, request: WriteRequest, records: Sequence[OnlineRecord]) -> list[bool]:
        batches: list[_Encoded] = []
        for names, run in itertools.groupby(records, key=lambda r: tuple(r.values)):
            group = list(run)
            batches.append(
                (
                    [r.entity for r in group],
                    [r.event_us for r in group],
                    [r.ingested_us for r in group],
                    names,
                    [[bulk(encode(r.values[name])) for r in group] for name in names],
                )
            )
        return self._compare_and_set(request, batches)

    def _write_columns(self, request: WriteRequest, batch: ColumnBatch) -> list[bool]:
        encoded = [
            column_bulk_encoder(request.schema.feature(name).data_type.kind)(column)
            for name, column in zip(batch.names, batch.columns, strict=True)
        ]
        return self._compare_and_set(
            request, [(batch.entities, batch.event_us, batch.ingested_us, batch.names, encoded)]
        )

    def _compare_and_set(self, request: WriteRequest, batches: list[_Encoded]) -> list[bool]:
        try:
            replies = self._stream(self._cas_commands(request, batches))
        except redis.exceptions.NoScriptError:
            # The server lost its scripts (restart, SCRIPT FLUSH): load again, once.
            # Replaying is safe: the compare-and-set accepts an equal write again.
            self._sha = None
            replies = self._stream(self._cas_commands(request, batches))
        accepted: list[bool] = []
        for reply in replies:
            accepted.extend(flag == 49 for flag in reply)  # b"1"
        return accepted

    def _script_options(self, request: WriteRequest) -> list[bytes]:
        """The script's ttl, force and history-size arguments, framed."""
        return [
            bulk(str(request.ttl_ms).encode()),
            bulk(b"1" if request.force else b"0"),
            bulk(b"%d" % self.history_size),
        ]

    def _cas_commands(self, request: WriteRequest, batches: list[_Encoded]) -> Iterator[bytes]:
        """EVALSHA commands of at most `SCRIPT_KEYS` entities each, packed one by one.

        Values arrive already framed as protocol bulk strings, so a command is one join.
        """
        head = [bulk(b"EVALSHA"), bulk(self._script_sha())]
        options = self._script_options(request)
        prefix = self.key(request.schema, "")
        for entities, event_us, ingested_us, names, columns in batches:
            fields = [bulk(b"%d" % len(names)), *(bulk(name.encode()) for name in names)]
            times = [bulk(b"%d" % t) for t in event_us]
            ingested = [bulk(b"%d" % t) for t in ingested_us]
            rows = list(zip(times, ingested, *columns, strict=True))
            width = 2 + len(names)
            for start in range(0, len(entities), SCRIPT_KEYS):
                stop = min(start + SCRIPT_KEYS, len(entities))
                count = stop - start
                arguments = len(head) + 1 + count + len(options) + len(fields) + count * width
                header = [
                    b"*%d\r\n" % arguments,
                    *head,
                    bulk(b"%d" % count),
                    *(bulk((prefix + e).encode()) for e in entities[start:stop]),
                    *options,
                    *fields,
                ]
                yield b"".join(chain(header, chain.from_iterable(rows[start:stop])))

    def _write_arrow(
        self, request: WriteRequest, tables: Iterable[Any], batch_rows: int
    ) -> tuple[int, int]:
        """Encode `ARROW_CHUNK_ROWS` rows at a time from their Arrow columns and stream the
        compare-and-set calls; a chunk is encoded while the server runs the one before."""
        schema = request.schema
        prefix = self.key(schema, "").encode()

        def chunks() -> Iterator[list[bytes]]:
            for table in tables:
                for offset in range(0, table.num_rows, ARROW_CHUNK_ROWS):
                    encoded = encode_rows(schema, table.slice(offset, ARROW_CHUNK_ROWS), prefix)
                    yield list(self._arrow_commands(request, encoded))

        return self._stream_scripts(chunks())

    def _arrow_commands(self, request: WriteRequest, encoded: EncodedRows) -> Iterator[bytes]:
        """EVALSHA commands of at most `SCRIPT_KEYS` encoded rows each (arguments as in
        `_cas_commands`): a join of the header and two runs of framed bytes."""
        names = request.schema.feature_names
        head = bulk(b"EVALSHA") + bulk(self._script_sha())
        options = b"".join(
            [
                *self._script_options(request),
                bulk(b"%d" % len(names)),
                *(bulk(name.encode()) for name in names),
            ]
        )
        width = 2 + len(names)
        for start in range(0, len(encoded), SCRIPT_KEYS):
            stop = min(start + SCRIPT_KEYS, len(encoded))
            count = stop - start
            arguments = 3 + count + 4 + len(names) + count * width
            yield b"".join(
                (
                    b"*%d\r\n" % arguments,
                    head,
                    bulk(b"%d" % count),
                    encoded.key_bytes(start, stop),
                    options,
                    encoded.row_bytes(start, stop),
                )
            )

    def _stream_scripts(self, chunks: Iterable[list[bytes]]) -> tuple[int, int]:
        """Send chunks of compare-and-set calls on one connection, reading a chunk's replies
        once `CHUNKS_IN_FLIGHT` more are sent (the server never waits for Python); returns
        (written, rejected).

        Calls refused with NOSCRIPT (the server lost its scripts) are sent again after the
        script is loaded (replaying is safe). Other error replies are raised once every reply
        is read; a dropped connection is closed, never reused.
        """
        with self._connection() as connection:
            return self._send_scripts(connection, chunks)

    def _send_scripts(
        self, connection: Connection, chunks: Iterable[list[bytes]]
    ) -> tuple[int, int]:
        pending: deque[tuple[list[bytes], bool]] = deque()
        counts = [0, 0]
        error: Exception | None = None

        def send(commands: list[bytes], retry: bool) -> None:
            for command in commands:
                connection.send_packed_command([command], check_health=False)
            pending.append((commands, retry))

        def settle() -> None:
            nonlocal error
            commands, retry = pending.popleft()
            lost = []
            for command in commands:
                try:
                    reply = connection.read_response()
                except redis.exceptions.NoScriptError as missing:
                    if retry:
                        error = error or missing
                    lost.append(command)
                    continue
                except redis.exceptions.ResponseError as reply_error:
                    error = error or reply_error
                    continue
                ones = reply.count(49)  # b"1": written
                counts[0] += ones
                counts[1] += len(reply) - ones
            if lost and not retry:
                self._sha = None
                self._script_sha()  # the same script text: the same sha as in `lost`
                send(lost, True)

        for commands in chunks:
            send(commands, False)
            while len(pending) > CHUNKS_IN_FLIGHT:
                settle()
        while pending:
            settle()
        if error is not None:
            raise error
        return counts[0], counts[1]

    # -- reads ---------------------------------------------------------------------------------

    def _read(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        commands = []
        for request in requests:
            head, prefix, tail = self._hmget_template(request)
            for entity in request.entities:
                key = entity.encode()
                commands.append(
                    b"%s%d\r\n%s%s\r\n%s" % (head, len(prefix) + len(key), prefix, key, tail)
                )
        replies = self._roundtrip(commands)
        out: list[list[StoredRow | None]] = []
        position = 0
        for request in requests:
            rows: list[StoredRow | None] = []
            for _ in request.entities:
                reply = replies[position]
                position += 1
                if reply[0] is None:
                    rows.append(None)
                    continue
                rows.append(
                    StoredRow(
                        int(reply[0]),
                        [ABSENT if raw is None else decode(raw) for raw in reply[1:]],
                    )
                )
            out.append(rows)
        return out

    def _hmget_template(self, request: ReadRequest) -> tuple[bytes, bytes, bytes]:
        """HMGET of the request's fields, packed once per group version and feature list."""
        cache_key = (request.schema.name, request.schema.version, request.features)
        template = self._templates.get(cache_key)
        if template is None:
            fields = [TS_FIELD.encode(), *(f.encode() for f in request.features)]
            head = b"*%d\r\n$5\r\nHMGET\r\n$" % (len(fields) + 2)
            prefix = f"{self.namespace}:{request.schema.name}@{request.schema.version}:".encode()
            tail = b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in fields)
            template = (head, prefix, tail)
            if len(self._templates) > 1024:
                self._templates.clear()
            self._templates[cache_key] = template
        return template

    # -- the wire --------------------------------------------------------------------------------

    def _roundtrip(self, commands: list[bytes]) -> list[Any]:
        """Send packed commands in one write, then read every reply."""
        return self._pipeline([b"".join(commands)], len(commands))

    def _stream(self, commands: Iterable[bytes]) -> list[Any]:
        """Send each packed command as soon as it is made, then read every reply."""
        return self._pipeline(commands, None)

    def _pipeline(self, chunks: Iterable[bytes], count: int | None) -> list[Any]:
        """Send on one pooled connection and read the replies (a pipeline, in order).

        An error reply is raised after every reply is read, so the connection stays in step;
        a dropped or timed-out connection is closed, never reused.
        """
        with self._connection() as connection:
            sent = 0
            for chunk in chunks:
                connection.send_packed_command([chunk], check_health=False)
                sent += 1
            replies: list[Any] = []
            error: Exception | None = None
            for _ in range(sent if count is None else count):
                try:
                    replies.append(connection.read_response())
                except redis.exceptions.ResponseError as reply_error:
                    error = error or reply_error
                    replies.append(reply_error)
            if error is not None:
                raise error
            return replies

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A pooled connection, released after use; one that failed other than by an error
        reply (dropped, timed out, interrupted) is closed first, never reused."""
        connection = self._pool.get_connection()
        try:
            yield connection
        except BaseException as failure:
            if not isinstance(failure, redis.exceptions.ResponseError):
                connection.disconnect()
            raise
        finally:
            self._pool.release(connection)

    # -- single values and their versions ---------------------------------------------------

    def _value_history(
        self, schema: FeatureGroupSchema, entity: str, feature: str, limit: int
    ) -> list[StoredValue]:
        key = self.key(schema, entity)
        pipe = self._client.pipeline(transaction=False)
        pipe.hmget(key, [TS_FIELD, feature])
        pipe.lrange(f"{key}{HISTORY_INFIX}{feature}", 0, limit - 1)
        (event_us, current), kept = pipe.execute()
        if current is None:
            return []
        if not kept:
            return [StoredValue(None, int(event_us), decode(current))]
        out = []
        for item in kept:
            version, event, raw = bytes(item).split(b":", 2)
            out.append(StoredValue(int(version), int(event), decode(raw)))
        return out

    def _delete_value(self, schema: FeatureGroupSchema, entity: str, feature: str) -> bool:
        key = self.key(schema, entity)
        pipe = self._client.pipeline(transaction=True)
        pipe.hdel(key, feature, f"@v:{feature}")
        pipe.delete(f"{key}{HISTORY_INFIX}{feature}")
        removed, _ = pipe.execute()
        return int(removed) > 0

    # -- deletes, health, lifecycle ------------------------------------------------------------

    def _delete(self, schema: FeatureGroupSchema, entities: list[str] | None) -> int:
        if entities is not None:
            keys = [self.key(schema, e) for e in entities]
            histories = (
                [f"{k}{HISTORY_INFIX}{f}" for k in keys for f in schema.feature_names]
                if self.history_size
                else []
            )
            deleted = 0
            for start in range(0, len(keys), DELETE_CHUNK):
                deleted += int(self._client.unlink(*keys[start : start + DELETE_CHUNK]))
            for start in range(0, len(histories), DELETE_CHUNK):
                self._client.unlink(*histories[start : start + DELETE_CHUNK])
            return deleted
        pattern = _escape_glob(f"{self.namespace}:{schema.name}@{schema.version}:") + "*"
        deleted = 0
        batch: list[bytes] = []
        infix = HISTORY_INFIX.encode()
        for key in self._client.scan_iter(match=pattern, count=1_000):
            batch.append(key)
            deleted += infix not in key  # an entity's hash, not one of its history lists
            if len(batch) >= DELETE_CHUNK:
                self._client.unlink(*batch)
                batch = []
        if batch:
            self._client.unlink(*batch)
        return deleted

    def _health(self) -> dict[str, Any]:
        self._client.ping()
        info = self._client.info(section="server")
        return {"redis_version": info.get("redis_version")}

    def _close(self) -> None:
        self._pool.disconnect()


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
