"""``graylane new trafficrouting`` and ``graylane new rollout-steps``: write the YAML for you."""
from __future__ import annotations

import argparse
import sys

from engine.cli.options import COMMAND_LINE, check_generated_objects, emit, object_output_option
from engine.errors import InvalidInputError


def _match_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("matches (ANDed into one match; --or makes each its own match)")
    group.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                       help="header equals VALUE (the name is lower-cased)")
    group.add_argument("--header-regex", action="append", default=[], metavar="NAME=REGEX",
                       help="header matches the RE2 REGEX")
    group.add_argument("--query", action="append", default=[], metavar="NAME=VALUE",
                       help="query parameter equals VALUE")
    group.add_argument("--query-regex", action="append", default=[], metavar="NAME=REGEX",
                       help="query parameter matches the RE2 REGEX")
    group.add_argument("--path-prefix", action="append", default=[], metavar="/PATH", help="path starts with /PATH")
    group.add_argument("--or", dest="any_of", action="store_true",
                       help="any condition sends a request to the canary (one match per condition)")
    modifier = parser.add_argument_group("request headers of canary requests (requestHeaderModifier)")
    modifier.add_argument("--set-header", action="append", default=[], metavar="NAME=VALUE")
    modifier.add_argument("--add-header", action="append", default=[], metavar="NAME=VALUE")
    modifier.add_argument("--remove-header", action="append", default=[], metavar="NAME")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True, metavar="SVC", help="the stable Service")
    parser.add_argument("--ref", action="append", default=[], metavar="KIND/NAME",
                        help="network object to route, e.g. VirtualService/reviews, DestinationRule/reviews or "
                             "networking.istio.io/v1/VirtualService/reviews (repeatable)")
    parser.add_argument("-n", "--namespace", metavar="NS")
    object_output_option(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("new", help="print a new TrafficRouting or Rollout canary steps",
                                   description="Write a Kruise TrafficRouting or Rollout traffic steps from flags; "
                                               "the output passes graylane validate and graylane render.")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)

    routing = kinds.add_parser("trafficrouting", help="a rollouts.kruise.io/v1alpha1 TrafficRouting",
                               description="Print a TrafficRouting NAME that sends matching requests (and/or --weight "
                                           "percent) of SVC to its canary through the --ref objects.")
    routing.add_argument("name", metavar="NAME")
    _common(routing)
    routing.add_argument("--weight", type=int, metavar="N", help="percent of traffic for the canary (0-100)")
    _match_options(routing)
    routing.set_defaults(handler=run_new_trafficrouting)

    steps = kinds.add_parser("rollout-steps", help="v1beta1 Rollout canary steps (spec.strategy.canary)",
                             description="Print the spec.strategy.canary of a rollouts.kruise.io/v1beta1 Rollout "
                                         "with one step per --steps percentage, or a whole Rollout with --workload.")
    _common(steps)
    steps.add_argument("--steps", required=True, metavar="P1,P2,...", help="traffic per step, e.g. 5%%,20%%,50%%")
    steps.add_argument("--replicas", metavar="R1,R2,...",
                       help="canary replicas per step: counts or percentages (default: the step's traffic)")
    steps.add_argument("--pause", type=int, metavar="SECONDS",
                       help="wait SECONDS between steps (default: wait for manual approval)")
    steps.add_argument("--workload", metavar="KIND/NAME",
                       help="print a whole Rollout for this workload, e.g. Deployment/reviews")
    steps.add_argument("--name", metavar="NAME", help="the Rollout's name (default: the workload's)")
    steps.add_argument("--no-canary-service", action="store_true",
                       help="route to a subset of the stable service (disableGenerateCanaryService)")
    _match_options(steps)
    steps.set_defaults(handler=run_new_rollout_steps)

    argo = kinds.add_parser("argo-rollout", help="an argoproj.io/v1alpha1 Rollout with Istio traffic routing",
                            description="Print an Argo Rollout NAME for a Deployment: one setWeight step per --steps "
                                        "percentage on the --virtual-service routes, host-level (--canary-service, "
                                        "--stable-service) or subset-level (--destination-rule).")
    argo.add_argument("name", metavar="NAME")
    argo.add_argument("--workload", required=True, metavar="Deployment/NAME", help="the Deployment (workloadRef)")
    argo.add_argument("--virtual-service", action="append", default=[], metavar="NAME[.NAMESPACE]",
                      help="VirtualService whose routes Argo patches (repeatable)")
    argo.add_argument("--route", action="append", default=[], metavar="NAME",
                      help="http route to patch (repeatable; optional when the VirtualService has one route)")
    argo.add_argument("--canary-service", metavar="SVC")
    argo.add_argument("--stable-service", metavar="SVC")
    argo.add_argument("--destination-rule", metavar="NAME", help="subset-level split on this DestinationRule")
    argo.add_argument("--canary-subset", default="canary", metavar="NAME")
    argo.add_argument("--stable-subset", default="stable", metavar="NAME")
    argo.add_argument("--steps", required=True, metavar="P1,P2,...", help="setWeight per step, e.g. 5%%,20%%,50%%")
    argo.add_argument("--pause", type=int, metavar="SECONDS", help="pause between steps (default: until promoted)")
    argo.add_argument("--header-route", metavar="NAME=VALUE",
                      help="first send requests with this header to the canary (a managed route, removed before "
                           "the last step)")
    argo.add_argument("-n", "--namespace", metavar="NS")
    argo.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    argo.set_defaults(handler=run_new_argo_rollout)


def _matches(args: argparse.Namespace) -> list[dict]:
    import engine.routing.authoring as authoring
    return authoring.build_matches(authoring.MatchOptions(args.header, args.header_regex, args.query,
                                                          args.query_regex, args.path_prefix, args.any_of))


_MODIFIER_FLAGS = {"set": "--set-header", "add": "--add-header", "remove": "--remove-header"}


def _modifier(args: argparse.Namespace):
    """The requestHeaderModifier of the flags, refused (naming the flag) where Istio would reject the rendered
    VirtualService: header values with a stray '%' or a newline, Host or pseudo-header operations."""
    import engine.routing.authoring as authoring
    from engine.checks.analyzers.admission import header_operation_error, header_value_error
    from engine.errors import InvalidInputError
    modifier = authoring.header_modifier(args.set_header, args.add_header, args.remove_header)
    for operation, entries in (modifier or {}).items():
        for entry in entries:
            name = entry if operation == "remove" else entry["name"]
            reason = header_operation_error(name, operation) or (
                None if operation == "remove" else header_value_error(entry["value"]))
            if reason:
                shown = name if operation == "remove" else f"{name}={entry['value']}"
                raise InvalidInputError(f"{_MODIFIER_FLAGS[operation]} {shown!r}: {reason} (Istio would reject it)")
    return modifier


def _emit(obj: dict, output: str, comment: str = "") -> None:
    if "kind" in obj:  # a whole object (not the canary part of a Rollout): checked as validate would
        check_generated_objects([(obj, COMMAND_LINE)])
    if output == "yaml" and comment:
        sys.stdout.write(comment)
    emit([obj], output)


def run_new_trafficrouting(args: argparse.Namespace) -> int:
    import engine.routing.authoring as authoring
    obj = authoring.traffic_routing(args.name, args.service, args.ref, _matches(args), args.weight, _modifier(args),
                                    args.namespace)
    _emit(obj, args.output)
    return 0


def run_new_rollout_steps(args: argparse.Namespace) -> int:
    import engine.routing.authoring as authoring
    workload_kind = args.workload.split("/")[-2] if args.workload and "/" in args.workload else None
    canary = authoring.canary_strategy(args.service, args.ref, args.steps, _matches(args), _modifier(args),
                                       args.replicas, args.pause, extra_workload=workload_kind in (None, "Deployment"),
                                       canary_service=not args.no_canary_service)
    if args.workload:
        name = args.name or args.workload.split("/")[-1]
        _emit(authoring.rollout(name, args.workload, canary, args.namespace), args.output)
    else:
        authoring.namespace(args.namespace)
        if args.output == "name":
            raise InvalidInputError("-o name needs --workload: without it the output is a part of a Rollout, "
                                    "not an object with a name")
        _emit({"canary": canary}, args.output,
              "# spec.strategy.canary of a rollouts.kruise.io/v1beta1 Rollout (paste under spec.strategy)\n")
    return 0


def run_new_argo_rollout(args: argparse.Namespace) -> int:
    import engine.routing.authoring as authoring
    from engine.routing.argo.authoring import argo_rollout
    obj = argo_rollout(args.name, args.workload, args.virtual_service, args.route, args.steps, args.canary_service,
                       args.stable_service, args.destination_rule, (args.canary_subset, args.stable_subset),
                       args.header_route, args.pause, authoring.namespace(args.namespace))
    _emit(obj, args.output)
    return 0
