"""One ingest writer process, fed by web processes over a local socket.

On SQLite one writer is all the database allows, and in the web process it shares one
GIL with the event loop. Here the writer lives in a process of its own: web processes
verify and parse, send each delivery over a Unix socket, and answer the webhook when the
writer replies, which it does only after the batch holding that delivery has committed.
Frames are a 4-byte length and a pickle; both ends are this program.
"""

from __future__ import annotations

import asyncio
import copyreg
import dataclasses
import io
import itertools
import logging
import operator
import pickle
import selectors
import socket
import struct
from pathlib import Path
from typing import Any

from cartnudge.events import CartEvent, Item, OrderInfo
from cartnudge.intake.service import Delivery, Outcome
from cartnudge.intake.shopify import ComplianceRequest
from cartnudge.intake.writer import IngestWriter, StorageUnavailable
from cartnudge.shops.repository import ShopRecord

log = logging.getLogger(__name__)
_LENGTH = struct.Struct("!I")


# What crosses the socket is pickled with a table of our own, so nothing else in the
# process pickles differently. By default a slotted dataclass is walked field by field in
# Python on both sides, which made pickling most of the cost of crossing.
_WIRE = copyreg.dispatch_table.copy()


def _by_constructor(cls: type[Any]) -> None:
    """A frozen dataclass travels as its constructor's arguments, gathered in one C call."""
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    if len(names) == 1:
        _WIRE[cls] = lambda obj: (cls, (getattr(obj, names[0]),))
    else:
        values = operator.attrgetter(*names)
        _WIRE[cls] = lambda obj: (cls, values(obj))


for _cls in (Delivery, Outcome, ShopRecord, CartEvent, Item, OrderInfo, ComplianceRequest):
    _by_constructor(_cls)


def _frame(value: Any) -> bytes:
    """A 4-byte length, then the pickle."""
    out = io.BytesIO()
    out.write(bytes(_LENGTH.size))
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _WIRE
    pickler.dump(value)
    frame = out.getbuffer()
    _LENGTH.pack_into(frame, 0, len(frame) - _LENGTH.size)
    return bytes(frame)


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
            self.selector.unregister(conn)
            self.buffers.pop(conn, None)
            conn.close()
            return
        buffer = self.buffers[conn]
        buffer += data
        offset = 0
        while len(buffer) - offset >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buffer, offset)
            if len(buffer) - offset - _LENGTH.size < size:
                break
            start = offset + _LENGTH.size
            request_id, delivery = pickle.loads(buffer[start : start + size])  # noqa: S301 - our own web processes
            batch.append((conn, request_id, delivery))
            offset = start + size
        del buffer[:offset]

    def _commit(self, batch: list[tuple[socket.socket, int, Delivery]]) -> None:
        results = self.writer.write_batch([delivery for _, _, delivery in batch])
        replies: dict[socket.socket, list[bytes]] = {}
        for (conn, request_id, _), result in zip(batch, results, strict=True):
            replies.setdefault(conn, []).append(_frame((request_id, result)))
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
        self._outgoing.append(_frame((request_id, delivery)))
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
                request_id, result = pickle.loads(await reader.readexactly(size))  # noqa: S301
                future = self._pending.pop(request_id, None)
                if future is None or future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            # The writer went away: nothing in flight can be confirmed, so the senders retry.
            self._writer = None
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(StorageUnavailable("ingest writer went away"))
            self._pending.clear()
