"""The worker process starts again, in place, when Kafka stops answering while faust starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from devstack.processes import free_port
from devstack.stack import REPO_ROOT

# faust's real Worker and app, on a port where no Kafka answers: its producer fails to
# bootstrap, as when Kafka goes down between the worker's wait for it and faust's start. The
# second incarnation of the process only reports that it was reached, with its PID.
SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import faust
    from services.worker.process import Worker, run

    marker = Path(sys.argv[1])
    if marker.exists():
        print(f"started again as {os.getpid()} after {marker.read_text()}", flush=True)
        sys.exit(0)
    marker.write_text(str(os.getpid()))
    app = faust.App("process-test", broker="kafka://127.0.0.1:{port}", autodiscover=False)
    run(Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False))
    """
)


def test_a_worker_that_kafka_fails_while_it_starts_starts_again_in_place(tmp_path: Path) -> None:
    marker = tmp_path / "first-pid"
    script = SCRIPT.replace("{port}", str(free_port()))
    done = subprocess.run(
        [sys.executable, "-c", script, str(marker)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    first_pid = marker.read_text()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "kafka stopped answering while the worker started" in done.stdout + done.stderr
    assert f"started again as {first_pid} after {first_pid}" in done.stdout
