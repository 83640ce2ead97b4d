"""Programs the sandbox tests run as student code, and how they count what is left behind."""

from pathlib import Path

# Forks up to 500 sleeping children: the process limit must stop it, and the sandbox must
# leave none behind.
FORK_BOMB = '''
import os, time
n = 0
try:
    while n < 500:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError:
    pass
'''


def processes_of(uid: int) -> int:
    """How many processes on the host run as ``uid`` (a sandbox must leave none behind)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except FileNotFoundError:  # the process ended while we looked
                pass
    return count
