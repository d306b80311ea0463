"""``graylane apply``, ``graylane status``, ``graylane controller`` and the cluster mode of ``graylane restore``.

``graylane restore`` works on files (offline, engine/cli/render.py) or on the cluster. It goes to the cluster when
``--cluster`` is given, or when the inputs hold only TrafficRouting/Rollout documents (no network objects
to restore offline). Anything else stays offline, as before. See README.md (cluster section).
"""
from __future__ import annotations

import argparse
import difflib
import sys
from typing import TYPE_CHECKING, Optional

from engine.cli.options import (dry_run_option, filename_option, force_option, output_check, print_warnings,
                                read_inputs, report_output_option, script_options)
from engine.errors import GraylaneError, InvalidInputError

if TYPE_CHECKING:
    from engine.documents import Document


def cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("--kubeconfig", metavar="FILE",
                       help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then the in-cluster account)")
    group.add_argument("--context", metavar="CTX", help="kubeconfig context to use (default: the current one)")
    group.add_argument("-n", "--namespace", metavar="NS",
                       help="namespace of inputs that do not name one (default: the context's namespace)")


def register(subparsers: argparse._SubParsersAction) -> None:
    apply_parser = subparsers.add_parser(
        "apply", help="apply a TrafficRouting or Rollout step to the objects it references in the cluster",
        description="Read each referenced VirtualService/DestinationRule from the cluster, store its original in "
                    "rollouts.kruise.io/original-spec-configuration if absent, run the scripts on the original, "
                    "validate, and update what changed (conditional on resourceVersion, retried on conflicts). "
                    "All or nothing: if any object fails, the ones already changed are put back.")
    filename_option(apply_parser, help="file, directory or - (stdin) holding TrafficRoutings/Rollouts; repeatable")
    apply_parser.add_argument("--step", type=int, metavar="N", help="Rollout step, 1-based (default 1)")
    dry_run_option(apply_parser)
    force_option(apply_parser)
    cluster_options(apply_parser)
    script_options(apply_parser)
    apply_parser.set_defaults(handler=run_apply)

    status_parser = subparsers.add_parser(
        "status", help="show what the referenced objects look like in the cluster",
        description="For every object referenced by the given TrafficRoutings/Rollouts (files, or TrafficRouting "
                    "names read from the cluster): whether an original is stored, and the canary weight, matches "
                    "and gray subset as they stand in the cluster.")
    status_parser.add_argument("names", nargs="*", metavar="TRAFFICROUTING",
                               help="TrafficRouting names to read from the cluster (none and no -f: every "
                                    "TrafficRouting of the namespace)")
    filename_option(status_parser, required=False)
    status_parser.add_argument("-A", "--all-namespaces", action="store_true",
                               help="every TrafficRouting of every namespace")
    report_output_option(status_parser, help="table (default; also 'text'; wide is the same), yaml or json")
    cluster_options(status_parser)
    status_parser.set_defaults(handler=run_status)

    restore_parser = subparsers.choices.get("restore")
    if restore_parser is not None:  # defined by engine/cli/render.py; the cluster mode is added here
        restore_parser.description = (
            (restore_parser.description or "") + " Cluster mode (with --cluster, or when the inputs hold only "
            "TrafficRoutings/Rollouts): put every referenced object in the cluster back from the annotation and "
            "remove it; idempotent; objects already gone are reported and skipped.")
        restore_parser.add_argument("--cluster", action="store_true",
                                    help="restore the referenced objects in the cluster instead of printing them")
        dry_run_option(restore_parser)
        cluster_options(restore_parser)
        restore_parser.set_defaults(handler=run_restore)

    controller_parser = subparsers.add_parser(
        "controller", help="run the TrafficRouting controller (watch, reconcile, restore on delete)",
        description="Watch rollouts.kruise.io/v1alpha1 TrafficRoutings and keep the objects they reference in the "
                    "state their spec.strategy asks for: apply on create/update, re-assert after manual edits "
                    "(rate limited), restore on delete (finalizer graylane.io/restore). Reports "
                    "status.observedGeneration/phase/message. Stops cleanly on SIGTERM.")
    controller_parser.add_argument("-A", "--all-namespaces", action="store_true",
                                   help="watch every namespace (default: --namespace or the context's)")
    controller_parser.add_argument("-l", "--selector", metavar="SELECTOR",
                                   help="only TrafficRoutings matching this label selector (to run beside Kruise)")
    controller_parser.add_argument("--scripts-configmap", metavar="[NS/]NAME",
                                   help="ConfigMap with Kruise keys lua.traffic.routing.<Kind>.<group>, read at "
                                        "start and reloaded when it changes (default namespace: the controller's)")
    controller_parser.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                                   help="hold a coordination.k8s.io Lease so only one replica reconciles "
                                        "(default: on)")
    controller_parser.add_argument("--lease-name", default="graylane-controller", metavar="NAME")
    controller_parser.add_argument("--lease-namespace", metavar="NS",
                                   help="namespace of the Lease (default: the controller's own namespace: the "
                                        "pod's, or the context's; not -n, which only picks what to watch)")
    controller_parser.add_argument("--lease-duration", type=int, default=15, metavar="SECONDS")
    controller_parser.add_argument("--identity", metavar="ID", help="leader election identity (default: host name "
                                                                    "and a random suffix)")
    controller_parser.add_argument("--workers", type=int, default=4, metavar="N",
                                   help="TrafficRoutings reconciled in parallel (default 4)")
    controller_parser.add_argument("--drift-interval", type=float, default=5.0, metavar="SECONDS",
                                   help="at most one drift-triggered re-assert per TrafficRouting per interval "
                                        "(default 5)")
    controller_parser.add_argument("--resync", type=float, default=300.0, metavar="SECONDS",
                                   help="re-check every TrafficRouting from the cache this often (default 300)")
    controller_parser.add_argument("--kube-api-qps", type=float, default=100.0, metavar="QPS",
                                   help="API requests per second, on average (client-go's QPS; 0: no limit; "
                                        "default 100)")
    controller_parser.add_argument("--kube-api-burst", type=int, default=200, metavar="N",
                                   help="API requests allowed at once above --kube-api-qps (default 200)")
    controller_parser.add_argument("--health-port", type=int, default=0, metavar="PORT",
                                   help="serve /healthz and /readyz on this port for the probes (default: off; "
                                        "the Deployment uses 8081)")
    controller_parser.add_argument("--shutdown-grace", type=float, default=20.0, metavar="SECONDS",
                                   help="on SIGTERM, wait this long for running reconciles, then abandon them "
                                        "and exit 0 (default 20, inside the Pod's 30 s grace period)")
    cluster_options(controller_parser)
    script_options(controller_parser)
    controller_parser.set_defaults(handler=run_controller)


def run_controller(args: argparse.Namespace) -> int:
    from engine.cluster.controller import run
    return run(args)


def connect(args: argparse.Namespace):
    from engine.cluster.client import connect as connect_cluster
    return connect_cluster(args.kubeconfig, args.context)


def _routing_documents(documents: list[Document], command: str) -> list[Document]:
    from engine.routing.strategy import is_routing_document
    routing = [d for d in documents if is_routing_document(d)]
    others = [d for d in documents if not is_routing_document(d)]
    if others and routing:
        print(f"note: {command} reads the referenced objects from the cluster; {len(others)} other document(s) "
              "in the inputs were ignored", file=sys.stderr)
    return routing


def _print_outcomes(report, dry_run: Optional[str]) -> int:
    for outcome in report.outcomes:
        print(outcome.line(dry_run))
        if dry_run == "client" and outcome.state == "configured":
            sys.stdout.write(diff(outcome.before, outcome.after, outcome.target.describe()))
    if not report.ok:
        print(f"error: {report.error}", file=sys.stderr)
        return 1
    return 0


def diff(before: dict, after: dict, name: str) -> str:
    """A unified diff of what apply would change (labels, annotations, spec)."""
    from engine.documents import dump_yaml
    def view(body: dict) -> list[str]:
        metadata = body.get("metadata") or {}
        shown = {"metadata": {k: metadata[k] for k in ("labels", "annotations") if k in metadata},
                 "spec": body.get("spec")}
        return dump_yaml([shown]).splitlines(keepends=True)
    return "".join(difflib.unified_diff(view(before), view(after), f"{name} (live)", f"{name} (applied)"))


def run_apply(args: argparse.Namespace) -> int:
    from engine import inputs
    from engine.cli.options import engine_from_args
    from engine.cluster.apply import Applier, targets_of
    from engine.routing.render import routing_plans
    if args.step is not None and args.step < 1:
        raise InvalidInputError("--step is 1-based and must be at least 1")
    documents = _routing_documents(read_inputs(args), "apply")
    plans = routing_plans(documents, args.step)
    engine = engine_from_args(args)
    cluster = connect(args)
    dry_run = None if args.dry_run == "none" else args.dry_run
    applier = Applier(cluster, engine, output_check(args), dry_run, judge_requests=True)
    report = applier.apply(targets_of(plans, cluster, args.namespace))
    print_warnings(applier.warnings)
    return _print_outcomes(report, dry_run)


def run_restore(args: argparse.Namespace) -> int:
    from engine import inputs
    from engine.routing.render import routing_plans
    from engine.routing.strategy import is_routing_document
    from engine.cli.render import run_restore as restore_offline
    documents = read_inputs(args)
    cluster_mode = args.cluster or (bool(documents) and all(is_routing_document(d) for d in documents))
    if not cluster_mode:
        if args.kubeconfig or args.context or args.namespace:
            print("note: restoring offline (the inputs hold network objects); --kubeconfig/--context/--namespace "
                  "are ignored; pass --cluster to restore in the cluster", file=sys.stderr)
        return restore_offline(args, documents)
    from engine.cluster.apply import Applier, targets_of
    plans = routing_plans(_routing_documents(documents, "restore --cluster"))
    cluster = connect(args)
    dry_run = None if args.dry_run == "none" else args.dry_run
    report = Applier(cluster, dry_run=dry_run).restore(targets_of(plans, cluster, args.namespace))
    return _print_outcomes(report, dry_run)


def run_status(args: argparse.Namespace) -> int:
    from engine import inputs
    from engine.documents import Document, dump_json, dump_yaml
    from engine.routing.render import routing_plans
    from engine.cluster.apply import Applier, targets_of
    from engine.cluster.client import TRAFFIC_ROUTING
    from engine.routing.names import did_you_mean
    if args.all_namespaces and (args.names or args.filename or args.namespace):
        raise InvalidInputError("-A lists every namespace: give no names, -f or -n with it")
    documents = _routing_documents(read_inputs(args), "status") if args.filename else []
    cluster = connect(args)
    resource = cluster.resource(TRAFFIC_ROUTING[0], TRAFFIC_ROUTING[1])
    namespace = None if args.all_namespaces else args.namespace or cluster.default_namespace
    for name in args.names:
        body = cluster.get(resource, namespace, name)
        if body is None:
            known = [(item.get("metadata") or {}).get("name", "") for item in cluster.list(resource, namespace)]
            raise GraylaneError(f"TrafficRouting {name} not found in namespace {namespace}"
                                + did_you_mean(name, known))
        documents.append(Document(body, f"cluster {namespace}/trafficrouting/{name}", 1))
    if not args.names and not args.filename:
        for body in cluster.list(resource, namespace):
            metadata = body.get("metadata") or {}
            documents.append(Document(body, f"cluster {metadata.get('namespace')}/trafficrouting/"
                                            f"{metadata.get('name')}", 1))
        if not documents:
            where = "any namespace" if namespace is None else f"namespace {namespace}"
            raise GraylaneError(f"no TrafficRouting in {where}")
    rows = Applier(cluster).status(targets_of(routing_plans(documents), cluster, args.namespace))
    if args.output == "json":
        sys.stdout.write(dump_json(rows))
    elif args.output == "yaml":
        sys.stdout.write(dump_yaml(rows))
    else:
        sys.stdout.write(status_text(rows))
    return 0 if all(row.get("found") and "error" not in row for row in rows) else 1


def status_text(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        lines.append(f"{row['object']} (namespace {row['namespace']}, routed by {row['routing']})")
        if "error" in row:
            lines.append(f"  error:           {row['error']}")
        elif not row.get("found"):
            lines.append("  not found")
        else:
            lines.append(f"  original stored: {'yes' if row['originalStored'] else 'no'}")
            if "canaryWeight" in row:
                weight = row["canaryWeight"]
                lines.append(f"  canary weight:   {weight if weight is not None else '-'}")
                lines.append(f"  matches:         {_matches_text(row['matches'])}")
            if "graySubset" in row:
                subset = row["graySubset"]
                labels = ", ".join(f"{k}={v}" for k, v in ((subset or {}).get("labels") or {}).items())
                lines.append(f"  gray subset:     {subset['name'] + ' (' + labels + ')' if subset else '-'}")
    return "\n".join(lines) + "\n"


def _matches_text(matches: list) -> str:
    if not matches:
        return "-"
    parts = []
    for match in matches:
        conditions = []
        for what in ("headers", "queryParams"):
            for name, condition in (match.get(what) or {}).items():
                kind, value = next(iter(condition.items())) if isinstance(condition, dict) and condition \
                    else ("?", condition)
                conditions.append(f"{'header' if what == 'headers' else 'query'} {name} {kind} {value!r}")
        if match.get("uri"):
            kind, value = next(iter(match["uri"].items()))
            conditions.append(f"uri {kind} {value!r}")
        parts.append(" and ".join(conditions) or str(match))
    return "; ".join(parts)
