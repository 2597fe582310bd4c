"""What a user reads: a bar per stage on a terminal, one line per stage in a log, and a word when waiting."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

SCRIPT = """
import time
from ragtune import console
with console.progress(3, "encode corpus", "text") as bar:
    for _ in range(3):
        bar.update(1)
    bar.set_postfix(loss="0.1234")
with console.waiting("starting the online store", after=0.2):
    time.sleep(0.6)
with console.waiting("never said", after=5):
    pass
"""


def run_in_terminal(script: str) -> str:
    """Run `script` with a real pseudo-terminal as its stdout and stderr; return what it wrote."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    process = subprocess.Popen([sys.executable, "-c", script], stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_a_log_gets_one_line_per_stage_and_no_waiting_words():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["encode corpus: 3/3 texts in 0 s (loss 0.1234)"]
    assert "\r" not in result.stderr


def test_a_terminal_gets_a_bar_and_is_told_what_it_waits_for():
    written = run_in_terminal(SCRIPT)
    assert "encode corpus: 100%" in written and "\r" in written  # tqdm's bar, redrawn in place
    assert "starting the online store ..." in written
    assert "never said" not in written
