"""``graylane chain``: everything a full-link gray release needs, from one FullLinkGray spec."""
from __future__ import annotations

import argparse
import sys

from engine.cli.options import (check_generated_objects, emit, engine_from_args, filename_option, force_option,
                                namespace_option, object_output_option, output_check, print_warnings, read_inputs,
                                script_options)
from engine.errors import GraylaneError, InvalidInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chain", help="generate the EnvoyFilter, TrafficRoutings and Rollouts of a full-link gray release",
        description="Read a FullLinkGray spec (graylane.io/v1alpha1) and print, ready for kubectl apply -f -: the "
                    "coloring EnvoyFilter for the ingress gateway, one TrafficRouting per released service (header "
                    "match on the lane, customNetworkRefs to its VirtualService and DestinationRule) and one Rollout "
                    "per released workload (patchPodTemplateMetadata with the gray labels). With --render and the "
                    "network objects among the inputs, also the mutated VirtualServices and DestinationRules. "
                    "Problems found in the inputs (e.g. a base subset that would also select the gray pods) are "
                    "printed on stderr as warnings.")
    filename_option(parser, help="the spec, plus (for checks and --render) the Services, workloads, VirtualServices and "
                             "DestinationRules; file, directory or -; repeatable")
    parser.add_argument("--render", action="store_true",
                        help="also print the VirtualServices/DestinationRules the TrafficRoutings produce")
    parser.add_argument("--strict", action="store_true", help="warnings are errors (exit 1, nothing printed)")
    namespace_option(parser)
    object_output_option(parser)
    force_option(parser)
    script_options(parser)
    parser.set_defaults(handler=run_chain)


def run_chain(args: argparse.Namespace) -> int:
    from engine.fulllink.chain import generate, is_fulllink, spec_origin, specs_of
    documents = read_inputs(args)
    specs = specs_of(documents)
    if not specs:
        raise InvalidInputError("no FullLinkGray (graylane.io/v1alpha1) among the inputs")
    others = [d for d in documents if not is_fulllink(d)]
    engine = engine_from_args(args) if args.render else None
    objects: list = []
    warnings: list[str] = []
    for spec in specs:
        output = generate(spec, others, engine, args.render, output_check(args) if args.render else None)
        check_generated_objects((body, spec_origin(spec)) for body in output.generated())
        objects.extend(output.objects)
        print_warnings(output.findings)
        warnings.extend(f"{spec.document.source}: FullLinkGray {spec.name}: {w}" for w in output.warnings)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.strict and warnings:
        raise GraylaneError(f"{len(warnings)} warning(s) with --strict")
    emit(objects, args.output)
    return 0
