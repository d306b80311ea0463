"""``graylane argocd ignore-differences``: Argo CD Application settings for objects a release changes."""
from __future__ import annotations

import argparse
import json
import sys

from engine.cli.options import engine_from_args, filename_option, script_options


def register(subparsers: argparse._SubParsersAction) -> None:
    argocd = subparsers.add_parser("argocd", help="Argo CD settings for GitOps with Kruise or Argo Rollouts",
                                   description="Argo CD settings that let a release change objects Argo CD syncs.")
    commands = argocd.add_subparsers(dest="argocd_command", metavar="SUBCOMMAND", required=True)
    ignore = commands.add_parser(
        "ignore-differences", help="spec.ignoreDifferences covering exactly what each step changes",
        description="Render every step of every Rollout/TrafficRouting in the inputs and print the Argo CD "
                    "Application spec.ignoreDifferences entries (jsonPointers where a fixed path is exact, "
                    "jqPathExpressions that pick list items by name, destination or match otherwise) that cover "
                    "what Kruise, Argo Rollouts or graylane change on each referenced object and nothing more, "
                    "with the sync options RespectIgnoreDifferences=true and ApplyOutOfSyncOnly=true. The output "
                    "is a patch for an existing Application (kubectl patch application NAME --type merge "
                    "--patch-file FILE).")
    filename_option(ignore)
    ignore.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    script_options(ignore)
    ignore.set_defaults(handler=run_ignore_differences)


def run_ignore_differences(args: argparse.Namespace) -> int:
    from engine import inputs
    from engine.checks.validate import check_rendered
    from engine.documents import dump_yaml
    from engine.routing.gitops import application_patch, ignore_differences
    documents = inputs.read_documents(args.filename)
    patch = application_patch(ignore_differences(documents, engine_from_args(args), check_rendered))
    if args.output == "json":
        sys.stdout.write(json.dumps(patch, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(dump_yaml([patch]))
    return 0
