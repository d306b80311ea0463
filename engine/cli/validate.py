"""``graylane validate`` (JSON Schemas + analyzers) and ``graylane schema`` (print a JSON Schema)."""
from __future__ import annotations

import argparse
import json
import sys

from engine.cli.options import filename_option, namespace_option, read_inputs, report_output_option
from engine.errors import InvalidInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.checks.codes import CODES
    codes = "; ".join(f"{c.code} {c.name}" for c in CODES.values())
    parser = subparsers.add_parser(
        "validate", help="check TrafficRoutings, Rollouts and Istio objects (JSON Schemas + analyzers)",
        description="Check every document against the JSON Schema of its kind (TrafficRouting, Rollout, "
                    "VirtualService, DestinationRule, EnvoyFilter, Gateway) and run the analyzers. Prints one line "
                    "per finding: SEVERITY CODE source#document path: message. Exit status 0 when clean, 1 when "
                    "there are errors (warnings too with --strict).",
        epilog=f"codes: {codes}")
    filename_option(parser)
    namespace_option(parser)
    report_output_option(parser, help="table (default; also 'text'): one line per finding; wide: the same with "
                                      "the check's name and the object; json or yaml: a list of findings")
    parser.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    parser.add_argument("--ignore", action="append", default=[], metavar="CODE",
                        help="leave out findings with this code (repeatable, or comma-separated)")
    parser.set_defaults(handler=run_validate)

    if "schema" not in subparsers.choices:
        schema_parser = subparsers.add_parser(
            "schema", help="print a JSON Schema (for editors: yaml-language-server, VS Code)",
            description="Print the JSON Schema NAME; without NAME, list the schemas and the kinds they cover.")
        schema_parser.add_argument("name", nargs="?", metavar="NAME")
        schema_parser.add_argument("--draft", choices=("2020-12", "07"), default="2020-12",
                                   help="JSON Schema dialect: 2020-12 (default, what graylane validates with) or 07 "
                                        "(for yaml-language-server / the VS Code YAML extension)")
        schema_parser.set_defaults(handler=run_schema)


def run_validate(args: argparse.Namespace) -> int:
    from engine.checks.codes import CODES
    from engine.checks.validate import has_errors, validate_documents
    ignore = [code.strip() for item in args.ignore for code in item.split(",") if code.strip()]
    unknown = [code for code in ignore if code.upper() not in CODES]
    if unknown:
        raise InvalidInputError(f"--ignore: unknown code(s) {', '.join(unknown)}; known: {', '.join(CODES)}")
    documents = read_inputs(args)
    if not documents:
        raise InvalidInputError("no Kubernetes objects in the inputs")
    findings = validate_documents(documents, ignore)
    failed = has_errors(findings, args.strict)
    if args.output == "json":
        sys.stdout.write(json.dumps([f.to_dict() for f in findings], indent=2, ensure_ascii=False) + "\n")
    elif args.output == "yaml":
        from engine.documents import dump_yaml
        sys.stdout.write(dump_yaml([[f.to_dict() for f in findings]]))
    else:
        if findings:
            sys.stdout.write("".join(_wide(f) if args.output == "wide" else f.line() + "\n" for f in findings))
        errors = sum(1 for f in findings if f.severity == "error")
        warnings = len(findings) - errors
        summary = (f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"
                   if findings else "no problems found")
        print(f"{summary} in {len(documents)} document{'s' if len(documents) != 1 else ''}", file=sys.stderr)
    return 1 if failed else 0


def _wide(finding) -> str:
    """The table line with the check's name and the object: ``error GL0101 WeightSum ... (VirtualService ns/x)``."""
    check = finding.to_dict()["check"]
    line = finding.line().replace(f" {finding.code} ", f" {finding.code} {check} ", 1)
    return line + (f" ({finding.object})" if finding.object else "") + "\n"


def run_schema(args: argparse.Namespace) -> int:
    from engine.checks.validate import draft07
    from engine.checks.schemas import SCHEMA_NAMES, SCHEMAS_BY_API_VERSION_KIND, load_schema

    if not args.name:
        covered: dict[str, list[str]] = {}
        for (api_version, kind), name in SCHEMAS_BY_API_VERSION_KIND.items():
            covered.setdefault(name, []).append(f"{api_version} {kind}")
        width = max(len(n) for n in SCHEMA_NAMES)
        sys.stdout.write("".join(f"{name:<{width}}  {', '.join(covered.get(name, []))}\n" for name in SCHEMA_NAMES))
        return 0
    if args.name not in SCHEMA_NAMES:
        raise InvalidInputError(f"unknown schema {args.name!r}; known: {', '.join(SCHEMA_NAMES)}")
    schema = load_schema(args.name)
    if args.draft == "07":
        schema = draft07(schema)
    sys.stdout.write(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
    return 0
