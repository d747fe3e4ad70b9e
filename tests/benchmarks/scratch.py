"""Where a benchmark keeps its state: a fresh folder under /tmp (stack file, tokens, database, replica logs), removed
when the benchmark ends, so ``make bench`` leaves nothing behind (a 60 s admission run writes tens of MB);
``TESTBED_BENCH_KEEP=1`` keeps it, and names it on stderr, to read the logs afterwards."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

KEEP_ENV = "TESTBED_BENCH_KEEP"


@contextmanager
def scratch_home(prefix: str) -> Iterator[Path]:
    """A new folder ``/tmp/<prefix>-*`` for the block; removed after it (however it ends) unless ``$TESTBED_BENCH_KEEP``."""
    home = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir="/tmp"))
    try:
        yield home
    finally:
        if os.environ.get(KEEP_ENV):
            print(f"kept {home} ({KEEP_ENV} is set)", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
