"""Kill the parent and every process the sandbox user may signal, then exit hard."""

import os
import signal

for pid in (os.getppid(), 1, -1):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
os._exit(0)
