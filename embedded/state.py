"""The state folder (``$TESTBED_HOME``) and what ``up`` records in its ``state.json``.

::

    state.json            ports, pids, URLs          control-plane.db   jobs and token hashes
    control-plane.json    the control plane's settings (``testbed.settings.ControlPlaneSettings``)
    credentials/*.token   tenant tokens, ray.token   mlflow/            SQLite store + artifacts
    ray/                  Ray's temp folder          logs/*.log         each component's output
    storage/              job outputs, checkpoints
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from pydantic import BaseModel, Field, computed_field

from testbed.isolation import LOCAL_MODE_LINE
from embedded.errors import LocalTestbedError
from operators.control_plane.contained_files import DIR_FLAGS, FILE_FLAGS
from embedded.ports import HOST
from testbed.secrets import write_secret

_SUBFOLDERS = ("logs", "credentials", "mlflow/artifacts", "storage", "ray")


class ComponentState(BaseModel):
    pid: int | None = None
    started_at: float | None = Field(
        default=None,
        description="the process's create time: with its command line, "
        "what tells it from another process under a reused pid",
    )
    ports: dict[str, int] = Field(default_factory=dict)
    log: str = ""


class LocalState(BaseModel):
    """What ``up`` recorded in ``state.json``."""

    instance: str  # the marker value in every process of this testbed
    region: str
    num_cpus: int
    num_gpus: int = 0  # Ray's logical GPUs on the head (`testbed up --gpus N`): no CUDA behind them
    components: dict[str, ComponentState] = Field(default_factory=dict)
    started_at: float | None = None

    def port(self, component: str, name: str) -> int:
        return self.components[component].ports[name]

    @property
    def control_plane_url(self) -> str:
        return f"http://{HOST}:{self.port('control_plane', 'http')}"

    @computed_field  # recorded in state.json for clients (``testbed.client.local_control_plane_url``)
    @property
    def client_url(self) -> str | None:
        return self.control_plane_url if "control_plane" in self.components else None

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.port('mlflow', 'http')}"

    @property
    def ray_dashboard_url(self) -> str:
        return f"http://{HOST}:{self.port('ray', 'dashboard')}"

    @property
    def ray_address(self) -> str:
        return f"{HOST}:{self.port('ray', 'gcs')}"


class ComponentStatus(BaseModel):
    name: str
    running: bool
    healthy: bool
    pid: int | None
    url: str | None
    log: str


class TestbedStatus(BaseModel):
    """What ``testbed status --json`` prints."""

    __test__ = False

    home: str
    region: str | None
    running: bool
    healthy: bool
    components: list[ComponentStatus]
    control_plane_url: str | None = None
    mlflow_url: str | None = None
    ray_dashboard_url: str | None = None
    ray_address: str | None = None
    trust: str = Field(default=LOCAL_MODE_LINE, description="local mode's trust boundary (docs/operators/isolation.md)")


class StateFolder:
    """The paths of one state folder, its ``state.json`` and its credentials."""

    def __init__(self, home: Path):
        self.home = home
        # Run as root, jobs run as a user of their own (embedded.jobs_user) that must reach its folders in here
        # (storage/, ray/): the state folder lets it pass, never list; everything else in it stays root's 0700.
        self.home_mode = 0o711 if os.geteuid() == 0 else 0o700

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def credentials_dir(self) -> Path:
        return self.home / "credentials"

    @property
    def settings_file(self) -> Path:
        """The control plane's settings, written at each start (its port survives a lost state.json)."""
        return self.home / "control-plane.json"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.home / 'control-plane.db'}"

    def log_file(self, component: str) -> Path:
        return self.home / "logs" / f"{component}.log"

    def prepare(self) -> None:
        """Create the folder's layout, the owner's only (0700; the state folder itself 0711 when run as root)."""
        for sub in _SUBFOLDERS:
            (self.home / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.tighten()

    def tighten(self) -> None:
        """Every folder under the state folder 0700, every file 0600 or less (links left as they are).

        The components run with umask 077; this catches what was made otherwise: Ray makes its temp and session
        folders 0777 on purpose (``ray._common.utils.try_make_directory_shared``), and what ``testbed up`` wrote.
        Run as root, Ray's folder and the storage belong to the jobs' user: the walk goes through descriptors
        opened without following links, so a job swapping a link in cannot point it anywhere else."""
        home = os.open(self.home, DIR_FLAGS)
        try:
            _tighten_below(home)
        finally:
            os.close(home)
        os.chmod(self.home, self.home_mode)

    def load(self) -> LocalState | None:
        try:
            return LocalState.model_validate_json(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def save(self, state: LocalState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        write_secret(tmp, state.model_dump_json(indent=2))  # 0600, like every file of the state folder
        tmp.replace(self.state_file)

    # -- credentials ------------------------------------------------------------------------
    def token(self, subject: str) -> str:
        """A tenant's (or the operator's) token, as the control plane wrote it at first start."""
        path = self.credentials_dir / f"{subject}.token"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise LocalTestbedError(
                f"no token for {subject!r} in {self.credentials_dir}; run `testbed up` first"
            ) from None

    @property
    def mlflow_admin_password_file(self) -> Path:
        """MLflow's admin password (0600): the MLflow server bootstraps its admin with it, the control plane reads it."""
        return self._secret_file("mlflow-admin.password")

    @property
    def mlflow_flask_key_file(self) -> Path:
        """MLflow's Flask (CSRF) key (0600)."""
        return self._secret_file("mlflow-flask.key")

    def _secret_file(self, name: str) -> Path:
        """A random secret generated once under the credentials folder."""
        path = self.credentials_dir / name
        if not path.exists():
            write_secret(path, secrets.token_urlsafe(32))
        return path

    @property
    def ray_token_file(self) -> Path:
        return self.credentials_dir / "ray.token"

    def ray_auth_env(self, by_value: bool = False) -> dict[str, str]:
        """Ray token auth for this testbed: only holders of its token reach Ray directly.

        Tenants go through the control plane; the Ray token is the local operator's. ``by_value``
        (Ray's own environment, which jobs inherit) passes the token, not the credentials path.
        """
        if not self.ray_token_file.exists():
            write_secret(self.ray_token_file, secrets.token_hex(32))
        if by_value:
            return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.ray_token_file.read_text().strip()}
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.ray_token_file)}

    def ray_auth_headers(self) -> dict[str, str]:
        try:
            return {"Authorization": f"Bearer {self.ray_token_file.read_text().strip()}"}
        except OSError:
            return {}


def _tighten_below(folder: int) -> None:
    """:meth:`StateFolder.tighten` under the folder open as ``folder``: each entry opened once, then checked."""
    for entry in os.scandir(folder):
        try:
            is_folder = entry.is_dir(follow_symlinks=False)
            if not is_folder and not entry.is_file(follow_symlinks=False):
                continue  # links, sockets, FIFOs
            fd = os.open(entry.name, DIR_FLAGS if is_folder else FILE_FLAGS, dir_fd=folder)
        except OSError:  # removed or swapped meanwhile
            continue
        try:
            found = os.fstat(fd)
            mode = stat.S_IMODE(found.st_mode)
            if stat.S_ISDIR(found.st_mode):
                if mode != 0o700:
                    os.fchmod(fd, 0o700)
                _tighten_below(fd)
            elif stat.S_ISREG(found.st_mode) and found.st_nlink == 1 and mode & 0o077:
                os.fchmod(fd, mode & 0o700)  # a hard link may be any file of the machine's: left alone
        except OSError:
            continue
        finally:
            os.close(fd)
