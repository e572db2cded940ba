"""HTTP/1.1 connections of ``nst-serve``: uvicorn's h11 protocol with the bounds it lacks.

uvicorn (0.54, its pure-Python h11 protocol, which this module extends) bounds a connection
in two ways only: a keep-alive timeout, armed after a response and cancelled by any byte
received, and ``limit_concurrency``, which answers in plain text. Nothing runs while a
request's head arrives: a client that connects and sends nothing, or drips a header byte
every few seconds (slowloris), holds its connection for ever (seen here: both still open
after 28 s with a 2 s keep-alive timeout). Nor does anything run while a response waits for
a client that does not read it. And the errors h11 itself answers (400 for a malformed
head, 431 for an oversized one) have plain-text bodies where TF Serving's API promises JSON.

:class:`BoundedH11Protocol` adds to each connection:

* a head deadline: the request line and headers must be complete ``header_timeout``
  seconds after the connection opens, or after the first byte of a later request on a
  kept-alive connection. A deadline rather than an idle timer, so dripping bytes does not
  extend it. A client that sent part of a head gets a JSON 408; one that sent nothing is
  closed without a word (a client that pools connections would take an unasked-for 408 for
  the answer to its next request);
* a write deadline: a response the client has not taken within ``write_timeout`` seconds
  of the socket's buffers filling up is abandoned and the connection closed;
* a connection cap: a connection opened while ``max_connections`` are open gets a JSON
  503 for its request and is closed;
* JSON bodies for the 400 and 431 that h11 answers, and the 431 also for a head over the
  size limit that arrived whole (h11 measures only heads still incomplete);
* a close after a response sent while the request's body is still arriving (an oversized
  body refused, a body that timed out): uvicorn would otherwise read and discard the rest
  with no bound, each byte restarting its keep-alive timer.

Reading the body within a time bound, and its size, is the application's part
(:mod:`nst_tf.serving.server`), which has the request at hand.
"""

import json
import socket
import struct
from http import HTTPStatus

import h11
from absl import logging
from starlette.responses import Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from nst_tf.serving import protocol

# Response headers that end the connection after the response.
CLOSE = {"Connection": "close"}


def json_error(status, message, headers=None):
    """A Starlette response with TF Serving's error JSON, ``{"error": message}``."""
    return Response(_error_body(message), int(status), headers=headers, media_type="application/json")


def _error_body(message):
    return json.dumps(protocol.format_error(message)).encode("utf-8")


class _Connection(h11.Connection):
    """h11's connection state, keeping the protocol error it last raised (message and status)."""

    error = None

    def next_event(self):
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


class BoundedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a head deadline, a write deadline, a connection cap and
    JSON errors (see the module docstring). uvicorn builds one per connection; the bounds come
    through ``functools.partial``, passed as ``uvicorn.Config(http=...)``."""

    def __init__(self, *args, header_timeout, write_timeout, max_connections, **kwargs):
        super().__init__(*args, **kwargs)
        self.conn = _Connection(h11.SERVER, self.config.h11_max_incomplete_event_size)
        self.header_timeout = header_timeout
        self.write_timeout = write_timeout
        self.max_connections = max_connections
        self._head_deadline = None
        self._write_deadline = None
        self._over_cap = False
        # uvicorn runs self.app for each request.
        self._app, self.app = self.app, self._app_within_bounds

    def connection_made(self, transport):
        super().connection_made(transport)  # counts this one in self.connections
        self._over_cap = len(self.connections) > self.max_connections
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_timed_out)

    async def _app_within_bounds(self, scope, receive, send):
        max_head = self.config.h11_max_incomplete_event_size
        # h11 refuses a head over its limit only while the head is incomplete: one that came
        # whole in a single read (up to asyncio's 256 KiB) is measured here.
        head = (
            len(scope["raw_path"]) + len(scope["query_string"]) + sum(len(n) + len(v) + 4 for n, v in scope["headers"])
        )
        if head > max_head:
            app = json_error(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request line and headers exceed {max_head} bytes", CLOSE
            )
        elif self._over_cap:
            logging.log_every_n_seconds(
                logging.WARNING, "more than %d connections open: answering 503", 10, self.max_connections
            )
            app = json_error(
                HTTPStatus.SERVICE_UNAVAILABLE, f"server busy: {self.max_connections} connections open", CLOSE
            )
        else:
            app = self._app
        await app(scope, receive, send)

    def data_received(self, data):
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            # Bytes of a head, not yet all of it; a later request's first bytes start a new deadline.
            if self._head_deadline is None:
                self._head_deadline = self.loop.call_later(self.header_timeout, self._head_timed_out)
        else:
            self._head_deadline = _cancel(self._head_deadline)

    def on_response_complete(self):
        if self.conn.their_state is h11.SEND_BODY:  # the rest of the body would be read unbounded
            self.transport.close()
        super().on_response_complete()

    def connection_lost(self, exc):
        self._head_deadline = _cancel(self._head_deadline)
        self._write_deadline = _cancel(self._write_deadline)
        super().connection_lost(exc)

    def pause_writing(self):
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.write_timeout, self._write_timed_out)

    def resume_writing(self):
        super().resume_writing()
        self._write_deadline = _cancel(self._write_deadline)

    def send_400_response(self, msg):
        """What uvicorn calls when h11 refuses a request's head (``msg`` is uvicorn's generic text)."""
        error = self.conn.error
        status = error.error_status_hint if error is not None else HTTPStatus.BAD_REQUEST
        if status == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
            message = f"request line and headers exceed {self.config.h11_max_incomplete_event_size} bytes"
        else:
            message = f"malformed HTTP request ({error or msg})"
        self._answer_and_close(status, message)

    def _head_timed_out(self):
        self._head_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # part of a head arrived
            self._answer_and_close(
                HTTPStatus.REQUEST_TIMEOUT, f"request line and headers not received within {self.header_timeout:g} s"
            )
        else:
            self.transport.close()

    def _write_timed_out(self):
        self._write_deadline = None
        logging.vlog(1, "%s did not read its answer within %g s: resetting", self.client, self.write_timeout)
        # close() would wait to flush what the client does not read, and so would the kernel
        # after abort() (a FIN queued behind the unsent bytes): a zero linger time makes the
        # close a reset that drops them.
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _answer_and_close(self, status, message):
        status = HTTPStatus(status)
        body = _error_body(message)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close")]
        try:
            output = self.conn.send(h11.Response(status_code=int(status), headers=headers, reason=status.phrase))
            output += self.conn.send(h11.Data(data=body))
            output += self.conn.send(h11.EndOfMessage())
            self.transport.write(output)
        except h11.LocalProtocolError:  # a response had begun: nothing more can be said here
            pass
        self.transport.close()


def _cancel(timer):
    if timer is not None:
        timer.cancel()
    return None
