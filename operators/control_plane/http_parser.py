"""The control plane's HTTP/1.1 protocol: uvicorn's httptools protocol with a bound on a request's head.

Parsing with h11 (pure Python) was a fifth of the event loop's time under load; with httptools (llhttp, in C) and uvloop
the event loop takes about a fifth less CPU a submit (docs/operators/scale.md, "The server's HTTP parts"). uvicorn's
httptools protocol, unlike its h11 one, puts no limit on a request's head: httptools buffers a header until its end,
so a client streaming one endless header, before any token check, grows the server without bound. :class:`BoundedHttpToolsProtocol` answers 431 and closes the connection
when a request's head is over :data:`MAX_REQUEST_HEAD_BYTES`: while the head is incomplete, by the bytes read since it
began (whole reads: what httptools holds of a head is bounded by the limit and one read); once complete, by its URL
and headers as parsed. Requests read before it on the connection are answered first.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MAX_REQUEST_HEAD_BYTES = 16 * 1024  # h11's default bound on an incomplete head, which uvicorn's h11 protocol keeps
TOO_LARGE = b"request head too large"


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol refusing a request head over :data:`MAX_REQUEST_HEAD_BYTES` with a 431."""

    _in_head = True  # a new connection's first bytes are a head
    _head_bytes = 0  # bytes read while the head was not complete: bounds what httptools holds of it
    _head_size = 0  # the head's URL and headers as parsed: its size once complete, however it was read
    _refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_REQUEST_HEAD_BYTES and not self._refused:
            self._refuse_head()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        size, self._in_head, self._head_bytes, self._head_size = self._head_size, False, 0, 0
        if self._refused:
            return
        if size > MAX_REQUEST_HEAD_BYTES:  # read at once with what came before it: whole, but still too large
            self._refuse_head()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        # What follows on the connection is the next request's head; a part of it in this read goes uncounted.
        self._in_head, self._head_bytes = True, 0
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refused and not self._answering():
            self._answer_too_large()

    def _answering(self) -> bool:
        """Whether a request read before the refused head still waits for its answer (or runs)."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _refuse_head(self) -> None:
        """Read no more; answer 431 and close once the requests read before this head are answered."""
        self._refused = True
        self.flow.pause_reading()
        if not self._answering():
            self._answer_too_large()

    def _answer_too_large(self) -> None:
        if self.transport.is_closing():
            return
        self.logger.warning("Request head over %d bytes refused.", MAX_REQUEST_HEAD_BYTES)
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[431],
                    *(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers),
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: %d\r\n" % len(TOO_LARGE),
                    b"connection: close\r\n\r\n",
                    TOO_LARGE,
                ]
            )
        )
        self.transport.close()
