"""``graylane script configmap``: a script tree as the ConfigMap Kruise reads.

Kruise Rollouts looks a custom network script up in the ConfigMap ``kruise-rollout-configuration`` in its
own namespace (``POD_NAMESPACE``, by default ``kruise-rollout``), under the key
``lua.traffic.routing.<Kind>.<group>`` (core group: ``<Kind>.v1``, Kruise's group being the apiVersion's first
segment); ingress scripts under ``lua.traffic.routing.ingress.<classType>``
(pkg/util/configuration/configuration.go and customNetworkProvider in openkruise/rollouts). graylane's
``--lua-configmap`` reads the same keys, so a packaged tree renders exactly as the directory did.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from engine.documents import dump_yaml
from engine.routing.authoring import namespace as check_namespace, object_name
from engine.errors import InvalidInputError
from engine.lua.scripts import configmap_key, scripts_in_tree

KRUISE_CONFIGMAP_NAME = "kruise-rollout-configuration"
KRUISE_NAMESPACE = "kruise-rollout"
MAX_CONFIGMAP_DATA = 1024 * 1024  # bytes: the API server refuses a ConfigMap whose data is larger


def configmap(directories: list[str], name: str = KRUISE_CONFIGMAP_NAME, namespace: str = KRUISE_NAMESPACE) -> str:
    """The ConfigMap manifest (YAML) holding every script below ``directories``, keys sorted; refused when the
    API server would refuse it (the name, the namespace, more than 1 MiB of scripts)."""
    object_name(name, "--name")
    check_namespace(namespace)
    data: dict[str, str] = {}
    origins: dict[str, str] = {}
    for directory in directories:
        root = Path(directory)
        if not root.is_dir():
            raise InvalidInputError("not a directory", source=directory)
        for key, script in scripts_in_tree(root, f"{root}/").items():
            data_key = configmap_key(key)
            if data_key in origins:
                raise InvalidInputError(f"{script.origin} and {origins[data_key]} are both the script for "
                                        f"{key}; give one of them", source=directory)
            origins[data_key] = script.origin
            data[data_key] = script.source
    if not data:
        raise InvalidInputError("no <group>/<Kind>/trafficRouting.lua or trafficrouting_ingress/<class>.lua "
                                "below " + ", ".join(directories))
    size = sum(len(key.encode()) + len(value.encode()) for key, value in data.items())
    if size > MAX_CONFIGMAP_DATA:
        raise InvalidInputError(f"the scripts below {', '.join(directories)} take {size} bytes; a ConfigMap holds "
                                f"at most {MAX_CONFIGMAP_DATA} (1 MiB), so the API server would refuse it")
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
                "data": {key: data[key] for key in sorted(data)}}
    text = dump_yaml([manifest])
    if yaml.safe_load(text)["data"] != manifest["data"]:  # the round trip must be exact, byte for byte
        raise AssertionError("a script did not survive YAML quoting; this is a graylane bug")
    return text
