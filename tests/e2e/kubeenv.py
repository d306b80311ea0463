"""A throwaway, real Kubernetes API server (etcd + kube-apiserver) for graylane e2e tests.

Why: graylane's correctness depends on API-server behaviour that mocks get wrong
(optimistic concurrency, dry-run, finalizers, watches, structural pruning, RBAC).
No docker is needed: both binaries are built from Go modules by build-apiserver.sh.

Library use: ``env = start(); ...; env.stop()``.
CLI use:     ``python tests/e2e/kubeenv.py up|env|down`` (state kept under the cache dir).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CRD_DIR = REPO / "deploy" / "crds"
BUILD_SCRIPT = HERE / "build-apiserver.sh"
CACHE = Path(os.environ.get("GRAYLANE_CACHE", Path.home() / ".cache" / "graylane"))
STATE_FILE = CACHE / "kubeenv" / "state.json"
CONTEXT = "graylane-e2e"
ADMIN_USER = "graylane-admin"


# Writes to graylane's kinds and Leases, at Metadata level: who (user agent) wrote what, and when. Tests
# count writers in it (two controller replicas must never write at the same time).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete"],
         "resources": [{"group": "networking.istio.io"}, {"group": "rollouts.kruise.io"},
                       {"group": "coordination.k8s.io", "resources": ["leases"]}]},
        {"level": "None"},
    ],
}


class KubeEnvError(RuntimeError):
    """The binaries could not be built or the control plane did not come up."""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"<no log at {path}>"


def _tell_terminal(message: str) -> None:
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


def build_binaries(log: Path | None = None, tell: Callable[[str], None] = _tell_terminal) -> tuple[Path, Path]:
    """Return (kube-apiserver, etcd) paths, building them once into the cache dir. A build that takes more
    than a moment is ``tell``-ed to the person waiting (by default on stderr when it is a terminal)."""
    log = log or CACHE / "build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as err, tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(["bash", str(BUILD_SCRIPT)], stdout=out, stderr=err, text=True)
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            missing = subprocess.run(["bash", str(BUILD_SCRIPT), "--missing"], capture_output=True,
                                     text=True).stdout.strip().replace("\n", " and ")
            tell(f"waiting for {missing or 'kube-apiserver and etcd'} to be built from their Go modules (a first, "
                 f"cold build takes about 12 minutes on 2 cores; log: {log})")
            proc.wait()
        out.seek(0)
        stdout = out.read()
    paths = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    if proc.returncode != 0 or not {"KUBE_APISERVER", "ETCD"} <= paths.keys():
        raise KubeEnvError(
            f"build-apiserver.sh failed (rc={proc.returncode}); {log} tail:\n{_tail(log)}"
        )
    return Path(paths["KUBE_APISERVER"]), Path(paths["ETCD"])


def free_port() -> int:
    """Ask the OS for an unused loopback port (tiny race until the server binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child if the test process dies, so no servers leak."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclass
class KubeEnv:
    """A running control plane; serialisable so `kubeenv.py down` can stop an `up` env."""

    workdir: Path
    server: str
    token: str
    kubeconfig: Path
    context: str = CONTEXT
    pids: list[int] = field(default_factory=list)
    startup_seconds: float = 0.0
    apiserver_argv: list[str] = field(default_factory=list)
    audit_log: str = ""  # JSON lines: every write to graylane's kinds and Leases (AUDIT_POLICY)

    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient bound to this env's kubeconfig/context."""
        from kubernetes import config

        return config.new_client_from_config(
            config_file=str(self.kubeconfig), context=self.context
        )

    def create_namespace(self, prefix: str = "e2e-") -> str:
        """Create a uniquely named namespace and return its name."""
        from kubernetes import client

        with self.api_client() as api:
            ns = client.V1Namespace(metadata=client.V1ObjectMeta(generate_name=prefix))
            meta = client.CoreV1Api(api).create_namespace(ns).metadata
            assert meta is not None and meta.name, (
                "server returned a namespace without a name"
            )
            return meta.name

    def stop_apiserver(self) -> None:
        """Kill kube-apiserver (etcd keeps running): clients see connection refused until ``start_apiserver``."""
        _kill_group(self.pids.pop())

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start kube-apiserver again with the same flags (same port, certificates and etcd)."""
        log = self.workdir / "kube-apiserver.log"
        proc = _spawn(self.apiserver_argv, log, die_with_parent=True)
        self.pids.append(proc.pid)
        _wait_http(f"{self.server}/readyz", proc, log, timeout, ctx=ssl._create_unverified_context(),
                   token=self.token)

    def audit_events(self) -> list[dict[str, Any]]:
        """Every audit event so far (see AUDIT_POLICY)."""
        path = Path(self.audit_log)
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    def stop(self, remove: bool = True) -> None:
        """Terminate the process groups (apiserver first), then drop the data dir."""
        for pid in reversed(self.pids):
            _kill_group(pid)
        self.pids.clear()
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def to_json(self) -> str:
        return json.dumps(
            {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        )

    @classmethod
    def from_json(cls, text: str) -> KubeEnv:
        d = json.loads(text)
        return cls(
            **{**d, "workdir": Path(d["workdir"]), "kubeconfig": Path(d["kubeconfig"])}
        )


def _kill_group(pid: int, grace: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child: reap it
                return
        except ChildProcessError:  # not our child (CLI `down`): poll liveness
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _spawn(
    argv: list[str], log: Path, die_with_parent: bool
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509 - no threads here
        )


def _wait_http(
    url: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
    ctx: ssl.SSLContext | None = None,
    token: str | None = None,
) -> None:
    """Poll url until it answers 200 'ok'; fail fast if the process died."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise KubeEnvError(
                f"{log.stem} exited with {proc.returncode}; log tail:\n{_tail(log)}"
            )
        req = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {token}"} if token else {}
        )
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:  # URLError/HTTPError/connection refused are all OSError
            last = str(exc)
        time.sleep(0.2)
    raise KubeEnvError(
        f"{url} not ready after {timeout}s ({last}); {log.name} tail:\n{_tail(log)}"
    )


def _write_sa_keys(certs: Path) -> tuple[Path, Path]:
    """RSA key pair for signing/verifying service-account tokens.

    Uses `cryptography` when installed (it is not a graylane dependency), else the openssl CLI.
    """
    key, pub = certs / "sa.key", certs / "sa.pub"
    try:
        from cryptography.hazmat.primitives import serialization as ser
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        if not shutil.which("openssl"):
            raise KubeEnvError(
                "need the `cryptography` package or the openssl CLI"
            ) from None
        for argv in (
            ["genrsa", "-out", key, "2048"],
            ["rsa", "-in", key, "-pubout", "-out", pub],
        ):
            subprocess.run(
                ["openssl", *map(str, argv)], check=True, capture_output=True
            )
        return key, pub
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem, pkcs8 = ser.Encoding.PEM, ser.PrivateFormat.PKCS8
    key.write_bytes(k.private_bytes(pem, pkcs8, ser.NoEncryption()))
    spki = ser.PublicFormat.SubjectPublicKeyInfo
    pub.write_bytes(k.public_key().public_bytes(pem, spki))
    return key, pub


def _write_kubeconfig(path: Path, server: str, ca: Path, token: str) -> None:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": CONTEXT,
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [{"name": ADMIN_USER, "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {
                    "cluster": CONTEXT,
                    "user": ADMIN_USER,
                    "namespace": "default",
                },
            }
        ],
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def iter_crds(crd_dir: Path = CRD_DIR) -> Iterator[dict[str, Any]]:
    """Yield every CRD document in crd_dir/*.yaml (sorted, so installs are deterministic)."""
    for f in sorted(crd_dir.glob("*.yaml")):
        yield from (d for d in yaml.safe_load_all(f.read_text()) if d)


def install_crds(
    env: KubeEnv, crd_dir: Path = CRD_DIR, timeout: float = 60.0
) -> list[str]:
    """Create all CRDs and wait until each is Established; return their names."""
    from kubernetes import client

    with env.api_client() as api:
        ext = client.ApiextensionsV1Api(api)
        names: list[str] = []
        for crd in iter_crds(crd_dir):
            ext.create_custom_resource_definition(crd)  # type: ignore[arg-type]  # dicts are sent as-is
            names.append(crd["metadata"]["name"])
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending:
            for name in list(pending):
                status = ext.read_custom_resource_definition(name).status
                conds = (status.conditions if status else None) or []
                if any(c.type == "Established" and c.status == "True" for c in conds):
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise KubeEnvError(
                    f"CRDs not Established after {timeout}s: {sorted(pending)}"
                )
            if pending:
                time.sleep(0.2)
    return names


def start(
    workdir: Path | None = None,
    crd_dir: Path | None = CRD_DIR,
    die_with_parent: bool = True,
    timeout: float = 120.0,
    extra_apiserver_args: list[str] | None = None,
    audit_policy: dict[str, Any] | None = None,
    tell: Callable[[str], None] = _tell_terminal,
) -> KubeEnv:
    """Build (if needed) and start etcd + kube-apiserver on free loopback ports, install CRDs. The audit log
    records ``audit_policy`` (default AUDIT_POLICY: writes to graylane's kinds and Leases)."""
    apiserver_bin, etcd_bin = build_binaries(tell=tell)
    t0 = time.monotonic()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="graylane-kube-"))
    certs = workdir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    token = secrets.token_hex(16)
    server = f"https://127.0.0.1:{api_port}"
    env = KubeEnv(
        workdir=workdir, server=server, token=token, kubeconfig=workdir / "kubeconfig"
    )
    try:
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd = _spawn(
            [
                str(etcd_bin),
                "--name=graylane-e2e",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=graylane-e2e=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            workdir / "etcd.log",
            die_with_parent,
        )
        env.pids.append(etcd.pid)
        _wait_http(f"{etcd_url}/health", etcd, workdir / "etcd.log", timeout)

        sa_key, sa_pub = _write_sa_keys(certs)
        tokens = workdir / "tokens.csv"
        tokens.write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        api_log = workdir / "kube-apiserver.log"
        policy_file = workdir / "audit-policy.yaml"
        policy_file.write_text(yaml.safe_dump(audit_policy or AUDIT_POLICY))
        env.audit_log = str(workdir / "audit.log")
        env.apiserver_argv = [
                str(apiserver_bin),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={certs}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--endpoint-reconciler-type=none",  # 127.0.0.1 is not a valid Endpoints address
                "--profiling=false",
                "--v=1",
                f"--audit-policy-file={policy_file}",
                f"--audit-log-path={env.audit_log}",
                "--audit-log-mode=blocking",
                *(extra_apiserver_args or []),
            ]
        apiserver = _spawn(env.apiserver_argv, api_log, die_with_parent)
        env.pids.append(apiserver.pid)
        ca = (
            certs / "apiserver.crt"
        )  # self-signed by kube-apiserver: leaf followed by its CA
        _wait_http(
            f"{server}/readyz",
            apiserver,
            api_log,
            timeout,
            ctx=ssl._create_unverified_context(),
            token=token,
        )
        _wait_http(
            f"{server}/readyz",
            apiserver,
            api_log,
            10,
            ctx=ssl.create_default_context(cafile=str(ca)),
            token=token,
        )  # CA really works
        _write_kubeconfig(env.kubeconfig, server, ca, token)
        if crd_dir is not None:
            install_crds(env, crd_dir)
    except BaseException as exc:
        env.stop(remove=False)
        if isinstance(exc, KubeEnvError) or not isinstance(exc, Exception):
            shutil.rmtree(workdir, ignore_errors=True)
            raise  # KubeEnvError already quotes the relevant log; Ctrl-C stays Ctrl-C
        tails = "\n".join(
            f"--- {f.name}:\n{_tail(f, 20)}" for f in sorted(workdir.glob("*.log"))
        )
        shutil.rmtree(workdir, ignore_errors=True)
        raise KubeEnvError(f"start-up failed: {exc!r}\n{tails}") from exc
    env.startup_seconds = round(time.monotonic() - t0, 2)
    return env


def main(argv: list[str] | None = None) -> int:
    """CLI: `up` starts a detached env, `env` prints shell exports, `down` stops it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["up", "down", "env"])
    args = p.parse_args(argv)
    if args.command == "up":
        if STATE_FILE.exists():
            print(
                f"already up (state in {STATE_FILE}); run `down` first", file=sys.stderr
            )
            return 1
        env = start(die_with_parent=False)
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(env.to_json())
        print(
            f"up in {env.startup_seconds}s: {env.server} (kubeconfig {env.kubeconfig})",
            file=sys.stderr,
        )
        args.command = "env"
    if not STATE_FILE.exists():
        print("not up", file=sys.stderr)
        return 1
    env = KubeEnv.from_json(STATE_FILE.read_text())
    if args.command == "env":
        print(
            f"export KUBECONFIG={env.kubeconfig}\nexport GRAYLANE_KUBE_CONTEXT={env.context}\n"
            f"export GRAYLANE_KUBE_SERVER={env.server}\nexport GRAYLANE_KUBE_TOKEN={env.token}"
        )
    else:
        env.stop()
        STATE_FILE.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
