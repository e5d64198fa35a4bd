"""A throwaway PostgreSQL cluster from the installed binaries, for trying several search workers on one study
(``benchmarks.search_workers``, ``tests/test_workers.py``)."""
from __future__ import annotations

from contextlib import contextmanager


def pg_binary(name: str) -> str | None:
    import glob
    import shutil

    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


@contextmanager
def postgres_cluster():
    """A throwaway PostgreSQL cluster (initdb + pg_ctl, as the unprivileged 'postgres' user when run as root, which
    PostgreSQL refuses), on a free port in a temporary folder; yields its URL, then stops and removes it."""
    import os
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile
    from pathlib import Path

    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="nasdeploy-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    try:
        subprocess.run(as_user + [initdb, "-D", str(data), "-U", "nasdeploy", "-A", "trust", "--no-sync"],
                       check=True, capture_output=True)
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        subprocess.run(as_user + [pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
                       check=True, capture_output=True)
        yield f"postgresql://nasdeploy@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

