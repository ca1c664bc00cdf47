"""Small helpers shared by the pika tests."""

import threading
import time

import pika


def drain(channel, queue):
    """Take (auto-ack) every ready message of `queue` with basic.get; returns [(method, properties, body)]."""
    messages = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return messages
        messages.append((method, properties, body))


def pump(connection, predicate, timeout=5.0):
    """Run the connection's I/O loop until predicate() holds or timeout passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        connection.process_data_events(time_limit=min(left, 0.05))
    return True


class Worker(threading.Thread):
    """A thread with its own connection that runs `on_message(channel, method, props, body)`
    for each delivery of `queue` until stop() is called. `ready` is set once consuming."""

    def __init__(self, url, queue, on_message, prefetch=None):
        super().__init__(daemon=True)
        self.url, self.queue, self.on_message = url, queue, on_message
        self.prefetch = prefetch
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self.error = None

    def run(self):
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
            try:
                ch = conn.channel()
                if self.prefetch is not None:
                    ch.basic_qos(prefetch_count=self.prefetch)
                ch.basic_consume(self.queue, self.on_message)
                self.ready.set()
                while not self._stopping.is_set():
                    conn.process_data_events(time_limit=0.05)
            finally:
                if conn.is_open:
                    conn.close()
        except BaseException as e:  # reported by join_checked
            self.error = e
            self.ready.set()

    def stop(self):
        self._stopping.set()

    def join_checked(self, timeout=10):
        self.stop()
        self.join(timeout)
        assert not self.is_alive(), "worker thread did not stop"
        if self.error is not None:
            raise self.error
