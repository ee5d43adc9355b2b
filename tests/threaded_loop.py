"""A loop of ours run in a thread of the test process, so that a test can read
its state (stats, counters) once it stopped: one way for every loop's tests."""
import contextlib
import socket
import threading

from kourier_lab import loops


@contextlib.contextmanager
def serving(cfg, app):
    """Start cfg.loop on a free port; yield (loop, port); stop it and check it ended."""
    loop = loops.create(cfg.loop, cfg, app)
    lsock = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run, args=(lsock,), daemon=True)
    thread.start()
    try:
        yield loop, lsock.getsockname()[1]
    finally:
        loop.request_stop()
        thread.join(10)
        lsock.close()
    assert not thread.is_alive()
