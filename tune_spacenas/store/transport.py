"""Direct node-to-node transfers of tensors between the store's shards and their clients: a socket beside
each shard.

Ray moves an object to another node through its object managers (gRPC, in chunks): on our machines 3-5x
the time of a raw TCP transfer of the same bytes, the largest part of a cross-node pull or push. So each
shard also runs a plain TCP server (``TensorServer``, threads in the shard's process):

* reads: a client on another node reads the tensor versions its pull named straight from it, only those
  (not the rest of the object holding them), in one round trip per shard, into one buffer;
* uploads: a client on another node sends a push's deltas to it first, then makes the push call with the
  upload's id instead of the arrays (the shard applies them as always, de-duplicated by (writer, step)).

Same-node transfers stay Ray's (zero-copy reads from the node's object store). A client falls back to
Ray when the socket cannot be reached, no longer holds an object (superseded meanwhile: the client's ref
keeps it alive in Ray) or lost an upload (the shard restarted). A connection is opened with a token the
client got through the store's own Ray call, so only clients of the store talk to it.

Wire format (big-endian lengths): a request ``<u64 n><JSON>``: ``{"read": [[object id hex, [keys]], ...]}``,
answered ``<u64 n><JSON [[key, dtype, shape]... or null per object]>`` then the tensors' bytes in that
order; or ``{"upload": [[key, dtype, shape], ...]}`` followed by the bytes, answered ``<u64 n><JSON id>``.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import struct
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

log = logging.getLogger("tune_spacenas.store")
_LENGTH = struct.Struct("!Q")
TIMEOUT_S = 30.0
RETRY_AFTER_S = 60.0  # an unreachable server is tried again after this long (Ray's transfer meanwhile)
UPLOAD_TTL_S = 300.0  # an upload no push call claimed (its client died in between) is dropped after this
DIRECT_MIN_BYTES = 1 << 20  # smaller pushes go through Ray: a socket round trip is not worth it


class TensorServer:
    """Serves the objects a store shard published (its own ``ray.put`` of tensor versions) to other nodes'
    clients, and receives their pushes' deltas (``take`` hands them to the shard's push)."""

    def __init__(self) -> None:
        import ray

        self.token = secrets.token_hex(16)
        self._refs: dict[str, Any] = {}  # object id -> the shard's ref
        self._arrays: dict[str, Mapping[str, np.ndarray]] = {}  # object id -> its tensors (zero-copy views)
        self._uploads: dict[str, tuple[float, dict[str, np.ndarray]]] = {}  # upload id -> (when, deltas)
        self._lock = threading.Lock()
        host = ray.util.get_node_ip_address()
        self._socket = socket.create_server((host, 0))
        self.address = (host, self._socket.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True, name="tensor-server").start()

    def publish(self, ref: Any) -> None:
        with self._lock:
            self._refs[ref.hex()] = ref

    def retire(self, ref: Any) -> None:
        with self._lock:
            self._refs.pop(ref.hex(), None)
            self._arrays.pop(ref.hex(), None)

    def take(self, upload: str) -> dict[str, np.ndarray] | None:
        """The deltas of an upload, once (None if this process never received it: it restarted since)."""
        with self._lock:
            _, deltas = self._uploads.pop(upload, (0.0, None))
        return deltas

    def _tensors(self, object_id: str) -> Mapping[str, np.ndarray] | None:
        import ray

        with self._lock:
            ref, arrays = self._refs.get(object_id), self._arrays.get(object_id)
        if arrays is None and ref is not None:
            arrays = ray.get(ref)  # this process's own object: a zero-copy view of the object store
            with self._lock:
                if object_id in self._refs:
                    self._arrays[object_id] = arrays
        return arrays

    def _accept(self) -> None:
        while True:
            conn, _ = self._socket.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="tensor-server-conn").start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(None)
            try:
                if not secrets.compare_digest(_receive_message(conn).decode(), self.token):
                    return
                while True:
                    request = json.loads(_receive_message(conn))
                    if "upload" in request:
                        _send_message(conn, json.dumps(self._receive_upload(conn, request["upload"])).encode())
                    else:
                        self._send_tensors(conn, request["read"])
            except (OSError, ValueError, ConnectionError):
                return

    def _send_tensors(self, conn: socket.socket, wanted: list) -> None:
        headers, payload = [], []
        for object_id, keys in wanted:
            arrays = self._tensors(object_id)
            if arrays is None or any(k not in arrays for k in keys):
                headers.append(None)
                continue
            headers.append([[k, arrays[k].dtype.str, list(arrays[k].shape)] for k in keys])
            payload += [np.ascontiguousarray(arrays[k]) for k in keys]
        _send_message(conn, json.dumps(headers).encode())
        for array in payload:
            conn.sendall(memoryview(array).cast("B"))

    def _receive_upload(self, conn: socket.socket, header: list) -> str:
        deltas = _receive_tensors(conn, header)
        upload, now = uuid.uuid4().hex, time.monotonic()
        with self._lock:
            for old in [u for u, (when, _) in self._uploads.items() if now - when > UPLOAD_TTL_S]:
                del self._uploads[old]
            self._uploads[upload] = (now, deltas)
        return upload


class TensorLink:
    """A client process's connections to shards' ``TensorServer``s (one per server, reused, one request at a
    time); every failure reads as "not done", and the caller goes through Ray instead."""

    def __init__(self) -> None:
        self._connections: dict[tuple[str, int], socket.socket] = {}
        self._unreachable: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def read(self, address: Sequence, token: str, wanted: Sequence[tuple[Any, Sequence[str]]]) -> dict[Any, dict]:
        """``{ref: {key: array}}`` for the (ref, keys) pairs the server still holds; {} if it cannot be reached."""

        def exchange(conn: socket.socket) -> tuple[list, np.ndarray]:
            _send_message(conn, json.dumps({"read": [[ref.hex(), list(keys)] for ref, keys in wanted]}).encode())
            headers = json.loads(_receive_message(conn))
            return headers, [_receive_tensors(conn, h) if h is not None else None for h in headers]

        done = self._exchange(address, token, exchange)
        if done is None:
            return {}
        return {ref: tensors for (ref, _), tensors in zip(wanted, done[1]) if tensors is not None}

    def upload(self, address: Sequence, token: str, deltas: Mapping[str, np.ndarray]) -> str | None:
        """Send ``deltas`` to the server; the upload's id for the push call, or None if it cannot be reached."""

        def exchange(conn: socket.socket) -> str:
            arrays = {k: np.ascontiguousarray(d, dtype=np.float32) for k, d in deltas.items()}
            header = [[k, a.dtype.str, list(a.shape)] for k, a in arrays.items()]
            _send_message(conn, json.dumps({"upload": header}).encode())
            for array in arrays.values():
                conn.sendall(memoryview(array).cast("B"))
            return json.loads(_receive_message(conn))

        return self._exchange(address, token, exchange)

    def _exchange(self, address: Sequence, token: str, exchange):
        address = (str(address[0]), int(address[1]))
        if time.monotonic() < self._unreachable.get(address, 0.0):
            return None
        with self._lock:
            try:
                return exchange(self._connection(address, token))
            except (OSError, ValueError, ConnectionError) as err:
                self._drop(address)
                self._unreachable[address] = time.monotonic() + RETRY_AFTER_S
                log.warning(
                    "the weight store's socket %s:%d failed (%s); moving tensors through Ray's object "
                    "transfer for %.0f s",
                    *address,
                    err,
                    RETRY_AFTER_S,
                )
                return None

    def _connection(self, address: tuple[str, int], token: str) -> socket.socket:
        conn = self._connections.get(address)
        if conn is None:
            conn = socket.create_connection(address, timeout=TIMEOUT_S)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _send_message(conn, token.encode())
            self._connections[address] = conn
        return conn

    def _drop(self, address: tuple[str, int]) -> None:
        conn = self._connections.pop(address, None)
        if conn is not None:
            conn.close()


def _receive_tensors(conn: socket.socket, header: Sequence) -> dict[str, np.ndarray]:
    """The tensors ``header`` ([key, dtype, shape] each) announces, read into one buffer (views into it)."""
    sizes = [int(np.dtype(d).itemsize * np.prod(s, dtype=np.int64)) for _, d, s in header]
    buffer = np.empty(sum(sizes), np.uint8)
    _receive_into(conn, memoryview(buffer))
    out, offset = {}, 0
    for (key, dtype, shape), nbytes in zip(header, sizes):
        out[key] = buffer[offset : offset + nbytes].view(dtype).reshape(shape)
        offset += nbytes
    return out


def _send_message(conn: socket.socket, data: bytes) -> None:
    conn.sendall(_LENGTH.pack(len(data)) + data)


def _receive_message(conn: socket.socket) -> bytes:
    (length,) = _LENGTH.unpack(_receive_exactly(conn, _LENGTH.size))
    return _receive_exactly(conn, length)


def _receive_exactly(conn: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    _receive_into(conn, memoryview(buffer))
    return bytes(buffer)


def _receive_into(conn: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = conn.recv_into(view[got:])
        if n == 0:
            raise ConnectionError("the weight store's socket closed mid-message")
        got += n
