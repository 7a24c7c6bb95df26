"""`python adapters/server_guard.py COMMAND...`: run a loopback server (a stage's `mlflow
server`) and stop it when the stage that started it is gone, even killed by SIGKILL.

The stage starts this guard in a process group of its own (so a Ctrl-C in the terminal
does not stop the server before the stage has closed its runs) and holds the write end of
the guard's stdin. The kernel closes that end when the stage exits however it exits; the
guard reads EOF and stops its whole group: the server and the uvicorn worker it started.
Without it, a killed stage left its server running, holding a port and the store.
Standard library only: it is started by file path and imports nothing of the project.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

GRACE_SECONDS = 10


def _stop_group_when_orphaned(server: subprocess.Popen) -> None:
    sys.stdin.buffer.read()  # returns at EOF: the stage closed its end, or the kernel did
    os.killpg(0, signal.SIGTERM)  # the guard's own handler passes it on: it stays to make sure the rest stops
    try:
        server.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(0, signal.SIGKILL)


def main(command: list[str]) -> int:
    if not command:
        sys.exit("usage: python adapters/server_guard.py COMMAND [ARG...]")
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL)  # in this guard's process group
    # The stage stops the whole group with SIGTERM: the server has it too, so the guard waits
    # for the server to finish (the stage waits for the guard); sent to the guard alone, it is passed on.
    signal.signal(signal.SIGTERM, lambda *_: server.send_signal(signal.SIGTERM))
    threading.Thread(target=_stop_group_when_orphaned, args=(server,), daemon=True).start()
    return server.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
