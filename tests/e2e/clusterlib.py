"""Helpers for the cluster-mode e2e tests: run the real ``graylane`` command, load samples into a namespace,
and read/write objects with the official client (the test's own hands, not graylane's)."""
from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
DEPLOY = REPO / "deploy" / "controller"
PLURALS = {"VirtualService": "virtualservices", "DestinationRule": "destinationrules",
           "TrafficRouting": "trafficroutings", "Rollout": "rollouts", "Gateway": "gateways"}
ORIGINAL = "rollouts.kruise.io/original-spec-configuration"


def graylane_command() -> list[str]:
    """The installed ``graylane`` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "graylane"
    found = str(beside) if beside.exists() else shutil.which("graylane")
    assert found, "the graylane command is not installed (pip install -e .)"
    return [found]


def cluster_args(kube_env, kubeconfig: Optional[Path] = None) -> list[str]:
    return ["--kubeconfig", str(kubeconfig or kube_env.kubeconfig), "--context", kube_env.context]


def graylane(kube_env, *args: str, env: Optional[dict] = None, timeout: float = 120,
             cluster: bool = True) -> subprocess.CompletedProcess:
    argv = [*graylane_command(), *args, *(cluster_args(kube_env) if cluster else [])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def load(path: Path, namespace: str, kinds: Optional[tuple] = None) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    result = []
    for doc in docs:
        if kinds and doc["kind"] not in kinds:
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        result.append(doc)
    return result


def write_yaml(path: Path, docs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


class Kube:
    """The test's direct API access (CustomObjectsApi), for setup, concurrent edits and assertions."""

    def __init__(self, kube_env):
        from kubernetes import client
        self.api = kube_env.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.client = client

    @staticmethod
    def _gv(body_or_api_version) -> tuple[str, str]:
        api_version = body_or_api_version if isinstance(body_or_api_version, str) \
            else body_or_api_version["apiVersion"]
        group, _, version = api_version.rpartition("/")
        return group, version

    def create(self, body: dict) -> dict:
        group, version = self._gv(body)
        return self.custom.create_namespaced_custom_object(group, version, body["metadata"]["namespace"],
                                                           PLURALS[body["kind"]], body)

    def get(self, kind: str, namespace: str, name: str, api_version: str = "networking.istio.io/v1beta1") \
            -> Optional[dict]:
        from kubernetes.client.exceptions import ApiException
        group, version = self._gv(api_version)
        try:
            return self.custom.get_namespaced_custom_object(group, version, namespace, PLURALS[kind], name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def replace(self, body: dict) -> dict:
        group, version = self._gv(body)
        meta = body["metadata"]
        return self.custom.replace_namespaced_custom_object(group, version, meta["namespace"],
                                                            PLURALS[body["kind"]], meta["name"], body)

    def delete(self, kind: str, namespace: str, name: str, api_version: str = "networking.istio.io/v1beta1"):
        group, version = self._gv(api_version)
        return self.custom.delete_namespaced_custom_object(group, version, namespace, PLURALS[kind], name)

    def edit(self, kind: str, namespace: str, name: str, change: Callable[[dict], Any],
             api_version: str = "networking.istio.io/v1beta1") -> dict:
        """Read-modify-write with retries on conflict (the way a person or GitOps tool edits)."""
        from kubernetes.client.exceptions import ApiException
        for _ in range(20):
            body = self.get(kind, namespace, name, api_version)
            change(body)
            try:
                return self.replace(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                time.sleep(0.05)
        raise AssertionError(f"could not edit {kind}/{name}")


def state(body: dict) -> dict:
    """What graylane may change: spec, labels, annotations."""
    meta = body.get("metadata") or {}
    return {"spec": body.get("spec"), "labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# -- the controller as a real subprocess ----------------------------------------------------------------------

FULLLINK = SAMPLES / "fulllink"
TR_API = "rollouts.kruise.io/v1alpha1"
NETWORK = ("VirtualService", "DestinationRule")


class Controller:
    """``graylane controller`` as a subprocess, logging to ``log``; its Lease lives in the test's namespace."""

    def __init__(self, kube_env, namespace: str, log: Path, *extra: str, env: dict | None = None,
                 kubeconfig: Optional[Path] = None):
        self.log = log
        self.argv = [*graylane_command(), "controller", *cluster_args(kube_env, kubeconfig), "-n", namespace,
                     "--lease-namespace", namespace, "--lease-duration", "3", "--drift-interval", "1",
                     "--resync", "60", *extra]
        self.env = {**os.environ, **(env or {})}
        self.handle = log.open("w")
        self.proc = self._spawn()
        self.exits: list[int] = []  # exit codes of earlier runs (see ``supervise``)

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.argv, stdout=self.handle, stderr=subprocess.STDOUT, text=True, env=self.env)

    def text(self) -> str:
        return self.log.read_text()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the running process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def supervise(self, stop: threading.Event, backoff: float = 10.0) -> None:
        """Restart the process whenever it exits, as the kubelet restarts a failed container (CrashLoopBackOff:
        10 s, doubling); run in a thread until ``stop`` is set."""
        while not stop.is_set():
            code = self.proc.poll()
            if code is not None:
                self.exits.append(code)
                if stop.wait(backoff):
                    return
                backoff *= 2
                self.proc = self._spawn()
            stop.wait(0.2)

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.handle.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.handle.close()


class Partition:
    """A TCP proxy in front of the API server for one client: ``cut()`` drops its connections and leaves new
    ones hanging (a network partition), ``heal()`` forwards again."""

    def __init__(self, target: str):
        import socket
        import threading
        host, port = target.rsplit("//", 1)[-1].rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open = threading.Event()
        self.open.set()
        self._sockets: list = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                with self._lock:
                    self._sockets.append(client)  # hangs until healed, then is dropped
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source, sink) -> None:
        try:
            while self.open.is_set():
                data = source.recv(65536)
                if not data or not self.open.is_set():
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.close()
            except OSError:
                pass

    def cut(self) -> None:
        import socket
        self.open.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def heal(self) -> None:
        self.cut()  # connections left hanging during the cut are dropped, never forwarded late
        self.open.set()

    def kubeconfig(self, kube_env, path: Path) -> Path:
        """A copy of the env's kubeconfig that goes through this proxy."""
        config = yaml.safe_load(Path(kube_env.kubeconfig).read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = self.url
        path.write_text(yaml.safe_dump(config))
        return path

    def close(self) -> None:
        self.cut()
        self.listener.close()


def writes_by(kube_env, marker: str, namespace: str, since: str = "") -> list[dict]:
    """Audit events of writes in ``namespace`` whose user agent contains ``marker`` (a controller's identity),
    after the ISO time ``since``."""
    return [e for e in kube_env.audit_events() if marker in (e.get("userAgent") or "")
            and e.get("verb") in ("create", "update", "patch", "delete") and e.get("stage") == "ResponseComplete"
            and (e.get("objectRef") or {}).get("resource") != "leases"
            and (e.get("objectRef") or {}).get("namespace") == namespace
            and e.get("requestReceivedTimestamp", "") > since]


def network_objects(kube: Kube, namespace: str, *files: str) -> dict:
    created = {}
    for name in files:
        for body in load(FULLLINK / name, namespace, NETWORK):
            created[body["metadata"]["name"]] = kube.create(body)
    return created


def numbered(kube, namespace: str, count: int) -> list[str]:
    """``count`` copies of the mocka sample (vs-mocka-N, dr-mocka-N, TrafficRouting mocka-tr-N); their names."""
    names = []
    for index in range(count):
        for body in load(FULLLINK / "mocka.yaml", namespace, NETWORK):
            body["metadata"]["name"] += f"-{index}"
            kube.create(body)
        body = routing(namespace)
        body["metadata"]["name"] = f"mocka-tr-{index}"
        for ref in body["spec"]["objectRef"][0]["customNetworkRefs"]:
            ref["name"] += f"-{index}"
        kube.create(body)
        names.append(body["metadata"]["name"])
    return names


def routing(namespace: str, name: str = "mocka-tr") -> dict:
    return next(d for d in load(FULLLINK / "trafficrouting.yaml", namespace) if d["metadata"]["name"] == name)


def tr(kube: Kube, namespace: str, name: str = "mocka-tr") -> dict | None:
    return kube.get("TrafficRouting", namespace, name, TR_API)


def has_canary_rule(vs: dict, value: str = "canary") -> bool:
    first = vs["spec"]["http"][0]
    return first.get("match") == [{"headers": {"my-request-id": {"exact": value}}}] \
        and first["route"][0]["destination"].get("subset") == "canary"


def has_gray_subset(dr: dict) -> bool:
    return any(s["name"] == "canary" for s in dr["spec"]["subsets"])


def phase(kube: Kube, namespace: str, name: str = "mocka-tr", generation: int | None = None):
    body = tr(kube, namespace, name)
    status = (body or {}).get("status") or {}
    if generation is not None and status.get("observedGeneration") != generation:
        return None
    return status.get("phase")


def create_all(api, path: Path) -> None:
    """Create every manifest in the file (already existing objects are fine: the server is session-wide)."""
    from kubernetes import utils
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        try:
            utils.create_from_dict(api, doc)
        except utils.FailToCreateError as exc:
            if any(getattr(e, "status", None) != 409 for e in exc.api_exceptions):
                raise


def service_account_kubeconfig(kube: Kube, kube_env, tmp_path: Path) -> Path:
    """A kubeconfig (context ``sa``, namespace graylane-system) with a token of deploy/controller's
    ServiceAccount, so RBAC applies to the controller as in the cluster."""
    from kubernetes import client
    token = client.CoreV1Api(kube.api).create_namespaced_service_account_token(
        "graylane-controller", "graylane-system", {"spec": {"expirationSeconds": 3600}}).status.token
    admin = yaml.safe_load(Path(kube_env.kubeconfig).read_text())
    kubeconfig = tmp_path / "sa-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": admin["clusters"], "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "sa",
                                                "namespace": "graylane-system"}}]}))
    return kubeconfig


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_as_deployed(kubeconfig: Path, log: Path, *replacements: tuple[str, str]) -> subprocess.Popen:
    """``graylane`` with deploy/controller/deployment.yaml's arguments (``$(POD_NAME)`` and other
    ``(old, new)`` replacements applied), as the ServiceAccount of ``kubeconfig``, logging to ``log``."""
    deployment = yaml.safe_load((DEPLOY / "deployment.yaml").read_text())
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    for old, new in replacements:
        args = [a.replace(old, new) for a in args]
    argv = [*graylane_command(), *args, "--kubeconfig", str(kubeconfig), "--lease-duration", "3"]
    return subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def round_trip(kube: Kube, namespace: str, created: dict, check: Callable[[], None] = lambda: None) -> None:
    """A labelled mocka-tr is reconciled (then ``check()``), deleted, and every object restored."""
    body = routing(namespace)
    body["metadata"]["labels"] = {"graylane.io/controller": "enabled"}
    kube.create(body)
    wait_for(lambda: phase(kube, namespace) == "Progressing", what="the TrafficRouting reconciled")
    check()
    kube.delete("TrafficRouting", namespace, "mocka-tr", TR_API)
    wait_for(lambda: tr(kube, namespace) is None, what="restore and finalizer removal")
    for name in ("vs-mocka", "dr-mocka"):
        assert state(kube.get(created[name]["kind"], namespace, name)) == state(created[name])


def stopped_cleanly(proc: subprocess.Popen, log: Path) -> str:
    """SIGTERM, wait, and the log; the exit status must be 0 and no request may have been forbidden."""
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(30)
    text = log.read_text()
    assert code == 0, text
    # an API error reads "...: Forbidden (403): ..." (engine/cluster/client.py); a bare "403" may be a timestamp's
    # milliseconds ("07:04:40,403")
    assert "Forbidden" not in text and "(403)" not in text, text
    return text
