"""Programs the sandbox tests run as student code."""

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
