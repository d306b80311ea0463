"""``graylane color``: the EnvoyFilter that colors requests at the ingress gateway."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING
import sys

from engine.cli.options import (COMMAND_LINE, check_generated_objects, emit, filename_option, object_output_option,
                                read_inputs)
from engine.errors import InvalidInputError

if TYPE_CHECKING:
    from engine.fulllink.color import ColoringSpec, GatewayTarget


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.fulllink.defaults import DEFAULT_BASE_VALUE, DEFAULT_LANE_VALUE, DEFAULT_NAMESPACE, DEFAULT_SALT
    parser = subparsers.add_parser(
        "color", help="generate the coloring EnvoyFilter (Lua) that puts requests into a lane at the gateway",
        description="Generate a networking.istio.io/v1alpha3 EnvoyFilter that inserts an envoy.filters.http.lua "
                    "filter before the router of the ingress gateway. Its Lua sets the lane header from the first "
                    "rule that matches (else the default), overwriting a lane header sent by the client unless "
                    "--trust-existing, and calls clearRouteCache(). Rules come from --rule flags or from the "
                    "coloring section of a FullLinkGray spec (-f).",
        epilog="rule syntax: header:NAME=VALUE (exact), header:NAME^=PREFIX, header:NAME~=REGEX (RE2, full "
               "match), header:NAME (present); the same with cookie:NAME or query:NAME; percent:N:header:NAME "
               "(a stable N%% of the values of that header, e.g. user ids; also cookie: or query:). Join "
               "conditions with && and end with =>LANE to set another lane value than --lane-value. Example: "
               "graylane color --lane-header my-request-id --rule 'header:agent=pc'")
    filename_option(parser, required=False, help="FullLinkGray spec(s) to take the coloring from (file, directory or -)")
    parser.add_argument("--lane-header", metavar="NAME", help="the header that carries the lane")
    parser.add_argument("--lane-value", metavar="VALUE",
                        help=f"value rules set unless they say =>LANE (default {DEFAULT_LANE_VALUE})")
    parser.add_argument("--rule", action="append", default=[], metavar="RULE",
                        help="a coloring rule, checked in order; the first match wins (repeatable)")
    parser.add_argument("--default", metavar="VALUE",
                        help=f"lane of requests no rule matches (default {DEFAULT_BASE_VALUE})")
    parser.add_argument("--no-default", action="store_true",
                        help="requests no rule matches get no lane header (a client's is removed)")
    parser.add_argument("--trust-existing", action="store_true",
                        help="keep a lane header the client sent (default: overwrite it at the gateway)")
    parser.add_argument("--salt", metavar="TEXT",
                        help=f"mixed into percentage hashing, to pick other users per release (default {DEFAULT_SALT})")
    parser.add_argument("--name", metavar="NAME", help="EnvoyFilter name (default <lane-header>-coloring)")
    parser.add_argument("-n", "--namespace", metavar="NS",
                        help=f"EnvoyFilter namespace: the gateway's (default {DEFAULT_NAMESPACE})")
    parser.add_argument("--selector", action="append", default=[], metavar="KEY=VALUE",
                        help="gateway pod label for workloadSelector (repeatable; default istio=ingressgateway; "
                             "--selector '' for none)")
    parser.add_argument("--lua", action="store_true", help="print only the Lua code")
    object_output_option(parser)
    parser.set_defaults(handler=run_color)


def _fail(message: str, where: str) -> InvalidInputError:
    return InvalidInputError(message, field=where)


def parse_selector(items: list) -> dict:
    from engine.fulllink.color import DEFAULT_SELECTOR
    if not items:
        return dict(DEFAULT_SELECTOR)
    selector = {}
    for item in items:
        if item == "":
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--selector {item!r}: expected KEY=VALUE")
        selector[key] = value
    return selector


def from_flags(args: argparse.Namespace) -> tuple[ColoringSpec, GatewayTarget]:
    from engine.fulllink.color import ColoringSpec, DEFAULT_BASE_VALUE, DEFAULT_LANE_VALUE, DEFAULT_NAMESPACE, DEFAULT_SALT, GatewayTarget, check_spec, parse_rule_flag
    if not args.lane_header:
        raise InvalidInputError("--lane-header is required (or take everything from a FullLinkGray spec with -f)")
    if args.no_default and args.default is not None:
        raise InvalidInputError("--default and --no-default exclude each other")
    lane_value = args.lane_value or DEFAULT_LANE_VALUE
    rules = tuple(parse_rule_flag(text, lane_value, _fail) for text in args.rule)
    default = None if args.no_default else (args.default if args.default is not None else DEFAULT_BASE_VALUE)
    spec = ColoringSpec(args.lane_header.lower(), rules, default, "trust" if args.trust_existing else "overwrite",
                        args.salt if args.salt is not None else DEFAULT_SALT)
    check_spec(spec, lambda message, where: InvalidInputError(message, field=f"--{where}"))
    target = GatewayTarget(args.name or f"{spec.header}-coloring", args.namespace or DEFAULT_NAMESPACE,
                           parse_selector(args.selector))
    return spec, target


def run_color(args: argparse.Namespace) -> int:
    from engine import inputs
    from engine.fulllink.chain import SPEC_LABEL, spec_origin, specs_of
    from engine.fulllink.color import GatewayTarget, envoy_filter, generate_lua
    pairs: list[tuple] = []
    if args.filename:
        flags = [name for name, given in (("--lane-header", args.lane_header), ("--lane-value", args.lane_value),
                                          ("--rule", args.rule), ("--default", args.default is not None),
                                          ("--no-default", args.no_default), ("--trust-existing", args.trust_existing),
                                          ("--salt", args.salt), ("--selector", args.selector)) if given]
        if flags:
            raise InvalidInputError(f"-f takes the coloring from the spec; drop {', '.join(flags)}")
        specs = specs_of(read_inputs(args))
        if not specs:
            raise InvalidInputError("no FullLinkGray (graylane.io/v1alpha1) among the inputs")
        for spec in specs:
            target = spec.target
            if args.name or args.namespace:
                target = GatewayTarget(args.name or target.name, args.namespace or target.namespace, target.selector)
            pairs.append((spec.coloring, target, {SPEC_LABEL: spec.name}, spec_origin(spec)))
    else:
        pairs.append((*from_flags(args), None, COMMAND_LINE))
    if args.lua:
        sys.stdout.write("".join(generate_lua(spec) for spec, _target, _labels, _origin in pairs))
        return 0
    filters = [(envoy_filter(spec, target, labels), origin) for spec, target, labels, origin in pairs]
    check_generated_objects(filters)
    emit([body for body, _origin in filters], args.output)
    return 0
