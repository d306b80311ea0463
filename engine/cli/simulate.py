"""``graylane simulate``: where one request goes, hop by hop, without a cluster."""
from __future__ import annotations

import argparse
import json
import sys

from engine.cli.options import engine_from_args, filename_option, namespace_option, report_output_option, script_options
from engine.errors import GraylaneError, InvalidInputError

EXPECTATION_FAILED = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", help="trace a request through gateway, coloring, VirtualServices, DestinationRules and pods",
        description="Compute where a request goes, hop by hop: at the ingress gateway the coloring Lua of the "
                    "EnvoyFilters runs (in an emulation of Envoy's Lua API) and its header changes apply; at each "
                    "hop the VirtualService and its first matching http rule decide, the destination subset and the "
                    "Service selector pick the pods (none: 503 no healthy upstream), weighted routes are followed "
                    "branch by branch with exact shares, and each serving service makes the calls of the call graph "
                    "(FullLinkGray spec, graylane.io/calls annotations or --calls) forwarding only propagated "
                    "headers. TrafficRoutings among the inputs are rendered first (--no-render: simulate the objects "
                    "as given).",
        epilog="exit status: 0 done (and every --expect holds), 1 error (nothing on stdout), 3 an --expect "
               "does not hold (the trace is printed).")
    filename_option(parser, help="manifests: file, directory or - (stdin); repeatable")
    parser.add_argument("--request", required=True, metavar="'[METHOD] URL'",
                        help="the request, e.g. 'GET http://example.com/api?x=1'")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="a request header (repeatable)")
    parser.add_argument("--expect", action="append", default=[], metavar="SERVICE=LABEL=VALUE",
                        help="every request reaching SERVICE must be served by pods with LABEL=VALUE; or no-leak "
                             "(no-leak=SERVICE): no lane (of SERVICE) captures another service's traffic "
                             "(repeatable); exit 3 otherwise")
    parser.add_argument("--calls", action="append", default=[], metavar="SERVICE=CALLEE[,CALLEE]",
                        help="SERVICE calls CALLEE (a service, ns/service or an http:// URL of one); replaces "
                             "SERVICE's calls from specs and annotations (repeatable)")
    parser.add_argument("--propagate", action="append", default=[], metavar="HEADER",
                        help="a header services forward besides the lane header ('*': every header) (repeatable)")
    entry = parser.add_mutually_exclusive_group()
    entry.add_argument("--gateway", metavar="[NS/]NAME", help="enter through this Gateway")
    entry.add_argument("--mesh", action="store_true",
                       help="start inside the mesh (a client in --namespace calls the URL's service; no gateway)")
    parser.add_argument("--gateway-namespace", default="istio-system", metavar="NS",
                        help="namespace of the ingress gateway pods (default istio-system)")
    parser.add_argument("--gateway-label", action="append", default=[], metavar="KEY=VALUE",
                        help="another label of the gateway pods, for EnvoyFilter workloadSelectors (repeatable)")
    namespace_option(parser, default="default", help="namespace of objects that name none (default: default)")
    parser.add_argument("--no-render", action="store_true",
                        help="simulate the objects as given, without rendering TrafficRoutings first")
    parser.add_argument("--step", type=int, metavar="N", help="Rollout step to render, 1-based (default 1)")
    parser.add_argument("--max-hops", type=int, metavar="N", help="follow calls at most N hops deep (default 32)")
    parser.add_argument("--rollout-pods", action="store_true",
                        help="add the canary pods Kruise Rollouts with patchPodTemplateMetadata would create")
    report_output_option(parser, extra=("html",),
                         help="table (default; also 'text'; wide is the same): the trace for people; json or yaml: "
                              "the trace as data; html: one self-contained page with a picture of the call chain")
    script_options(parser)
    parser.set_defaults(handler=run_simulate)


def _labels(items: list, flag: str) -> dict:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"{flag} {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def _calls(items: list, namespace: str) -> dict:
    from engine.fulllink.simulate.simulator import parse_call
    graph: dict = {}
    for item in items:
        caller, sep, callees = item.partition("=")
        if not sep or not caller.strip():
            raise InvalidInputError(f"--calls {item!r}: expected SERVICE=CALLEE[,CALLEE...]")
        key = parse_call(caller, namespace).service
        graph.setdefault(key, []).extend(parse_call(c, key.split("/")[0]) for c in callees.split(",") if c.strip())
    return graph


def run_simulate(args: argparse.Namespace) -> int:
    from engine import inputs
    from engine.fulllink.envoy import parse_request
    from engine.fulllink.simulate.report import text, to_data
    from engine.fulllink.simulate.simulator import Options, parse_expectation, rendered_state, simulate
    if args.step is not None and args.step < 1:
        raise InvalidInputError("--step is 1-based and must be at least 1")
    request = parse_request(args.request, args.header)
    expectations = [parse_expectation(item) for item in args.expect]
    options = Options(namespace=args.namespace, entry="mesh" if args.mesh else None, gateway=args.gateway,
                      gateway_namespace=args.gateway_namespace,
                      gateway_labels=_labels(args.gateway_label, "--gateway-label"),
                      calls=_calls(args.calls, args.namespace), propagate=[p.lower() for p in args.propagate],
                      rollout_pods=args.rollout_pods)
    if args.max_hops is not None:
        if args.max_hops < 1:
            raise InvalidInputError("--max-hops must be at least 1")
        options.max_hops = args.max_hops
    documents = inputs.read_documents(args.filename)
    rendered: list = []
    if not args.no_render:
        try:
            documents, rendered = rendered_state(documents, engine_from_args(args), args.step)
        except GraylaneError as error:
            raise GraylaneError(f"{error} (rendering the TrafficRoutings first; --no-render simulates the objects "
                                "as given)") from None
    trace = simulate(documents, request, options, expectations)
    trace.rendered = rendered
    if args.output == "json":
        sys.stdout.write(json.dumps(to_data(trace), indent=2, ensure_ascii=False) + "\n")
    elif args.output == "yaml":
        from engine.documents import dump_yaml
        sys.stdout.write(dump_yaml([to_data(trace)]))
    elif args.output == "html":
        from engine.fulllink.picture import gray_selectors, simulate_html
        sys.stdout.write(simulate_html(trace, gray_selectors(documents)))
    else:
        sys.stdout.write(text(trace))
    return 0 if trace.ok else EXPECTATION_FAILED
