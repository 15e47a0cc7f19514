"""One ingest writer process, fed by web processes over a local socket.

On SQLite one writer is all the database allows, and in the web process it shares one
GIL with the event loop. Here the writer lives in a process of its own: web processes
verify and parse, send each delivery over a Unix socket, and answer the webhook when the
writer replies, which it does only after the batch holding that delivery has committed.
Frames are a 4-byte length and a msgpack message; both ends are this program.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import selectors
import socket
import struct
from datetime import datetime
from pathlib import Path

import msgspec

from cartnudge.events import CartEvent, Unapplicable
from cartnudge.intake.service import Delivery, Outcome, Parsed
from cartnudge.intake.shopify import ComplianceRequest
from cartnudge.intake.writer import IngestWriter, Result, StorageUnavailable
from cartnudge.shops.repository import ShopRecord

log = logging.getLogger(__name__)
_LENGTH = struct.Struct("!I")


# What crosses the socket is typed msgpack (msgspec): encoding and decoding a delivery are
# a few µs of C each, where pickling a tree of dataclasses field by field in Python was most
# of the cost of crossing. The parsed part is one of three kinds, so each kind has a slot.
_Request = tuple[
    int,  # request id
    ShopRecord,
    str,  # source
    str,  # external id
    str,  # topic
    str,  # body
    datetime,  # received at
    CartEvent | None,
    str | None,  # a compliance request's topic
    str | None,  # why the delivery is unapplicable
]
_Reply = tuple[int, Outcome | None, str | None]  # request id, outcome or why unavailable
_encoder = msgspec.msgpack.Encoder()
_requests = msgspec.msgpack.Decoder(_Request)
_replies = msgspec.msgpack.Decoder(_Reply)


def _frame(value: _Request | _Reply) -> bytes:
    """A 4-byte length, then the message."""
    body = _encoder.encode(value)
    return _LENGTH.pack(len(body)) + body


def _request(request_id: int, delivery: Delivery) -> _Request:
    d, parsed = delivery, delivery.parsed
    return (
        request_id,
        *(d.shop, d.source, d.external_id, d.topic, d.body, d.received_at),
        parsed if isinstance(parsed, CartEvent) else None,
        parsed.topic if isinstance(parsed, ComplianceRequest) else None,
        str(parsed) if isinstance(parsed, Unapplicable) else None,
    )


def _delivery(message: _Request) -> tuple[int, Delivery]:
    request_id, shop, source, external_id, topic, body, received_at, event, compliance, why = (
        message
    )
    parsed: Parsed
    if event is not None:
        parsed = event
    elif compliance is not None:
        parsed = ComplianceRequest(compliance)
    else:
        parsed = Unapplicable(why)
    return request_id, Delivery(shop, source, external_id, topic, body, parsed, received_at)


def _reply(request_id: int, result: Result) -> _Reply:
    if isinstance(result, Outcome):
        return (request_id, result, None)
    return (request_id, None, str(result))


class WriterServer:
    """The writer process's side: one thread, one select loop. It reads every frame that
    has arrived from every web process, commits them as one batch, replies to each, and
    goes round again; while it writes, new deliveries wait in the socket buffers and make
    the next batch. No second thread, so no GIL to share."""

    def __init__(self, writer: IngestWriter, path: Path) -> None:
        self.writer = writer
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path.unlink(missing_ok=True)
        self.listener.bind(str(path))
        self.listener.listen(64)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.buffers: dict[socket.socket, bytearray] = {}

    def close(self) -> None:
        for conn in list(self.buffers):
            conn.close()
        self.buffers.clear()
        self.selector.close()
        self.listener.close()
        self.path.unlink(missing_ok=True)

    def serve_forever(self) -> None:
        while True:
            self.serve_once(timeout=None)

    def serve_once(self, timeout: float | None) -> int:
        """Read what is there, write it as one batch, reply. Returns the batch size."""
        batch: list[tuple[socket.socket, int, Delivery]] = []
        for key, _ in self.selector.select(timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is self.listener:
                conn, _ = sock.accept()
                self.selector.register(conn, selectors.EVENT_READ)
                self.buffers[conn] = bytearray()
            else:
                self._read(sock, batch)
        if batch:
            for start in range(0, len(batch), self.writer.batch_max):
                self._commit(batch[start : start + self.writer.batch_max])
        return len(batch)

    def _read(self, conn: socket.socket, batch: list[tuple[socket.socket, int, Delivery]]) -> None:
        try:
            data = conn.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        buffer = self.buffers[conn]
        buffer += data
        offset = 0
        while len(buffer) - offset >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buffer, offset)
            if len(buffer) - offset - _LENGTH.size < size:
                break
            start = offset + _LENGTH.size
            try:
                request_id, delivery = _delivery(_requests.decode(buffer[start : start + size]))
            except msgspec.DecodeError:
                # Both ends are this program, so this is a bug; the web process answers
                # what it has in flight with 503 and reconnects, and nothing is lost.
                log.exception("a frame from a web process could not be read; dropping it")
                self._drop(conn)
                return
            batch.append((conn, request_id, delivery))
            offset = start + size
        del buffer[:offset]

    def _drop(self, conn: socket.socket) -> None:
        self.selector.unregister(conn)
        self.buffers.pop(conn, None)
        conn.close()

    def _commit(self, batch: list[tuple[socket.socket, int, Delivery]]) -> None:
        results = self.writer.write_batch([delivery for _, _, delivery in batch])
        replies: dict[socket.socket, list[bytes]] = {}
        for (conn, request_id, _), result in zip(batch, results, strict=True):
            replies.setdefault(conn, []).append(_frame(_reply(request_id, result)))
        for conn, frames in replies.items():
            try:
                conn.sendall(b"".join(frames))
            except OSError:
                log.info("a web process went away before its replies")


class RemoteWriter:
    """The web process's side: same ``deliver`` as ``IngestWriter``, across the socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Outcome]] = {}
        self._outgoing: list[bytes] = []
        self._writer: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Lock | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()

    async def deliver(self, delivery: Delivery) -> Outcome:
        writer = await self._connect()
        request_id = next(self._ids)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        # Frames made in one turn of the event loop leave in one write: fewer system calls
        # here, and fewer, larger batches for the writer.
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush, writer)
        self._outgoing.append(_frame(_request(request_id, delivery)))
        return await future

    def _flush(self, writer: asyncio.StreamWriter) -> None:
        frames, self._outgoing = self._outgoing, []
        if frames and not writer.is_closing():
            writer.write(b"".join(frames))

    async def _connect(self) -> asyncio.StreamWriter:
        if self._writer is not None and not self._writer.is_closing():
            return self._writer
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is None or self._writer.is_closing():
                try:
                    reader, writer = await asyncio.open_unix_connection(str(self.path))
                except OSError as exc:
                    raise StorageUnavailable(f"ingest writer not reachable: {exc}") from exc
                self._writer = writer
                asyncio.get_running_loop().create_task(self._read(reader))
            return self._writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(_LENGTH.size)
                (size,) = _LENGTH.unpack(header)
                request_id, outcome, unavailable = _replies.decode(await reader.readexactly(size))
                future = self._pending.pop(request_id, None)
                if future is None or future.done():
                    continue
                if outcome is None:
                    future.set_exception(StorageUnavailable(unavailable))
                else:
                    future.set_result(outcome)
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            # The writer went away: nothing in flight can be confirmed, so the senders retry.
            if self._writer is not None:
                self._writer.close()
            self._writer = None
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(StorageUnavailable("ingest writer went away"))
            self._pending.clear()
