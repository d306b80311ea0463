"""Run Istio's own validation and analyzers (tests/peers/istio, built from istio.io/istio 1.31) over object sets."""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field

from peerlib import peer_binary

ISTIO_KINDS = ("VirtualService", "DestinationRule", "Gateway", "EnvoyFilter")


@dataclass
class OracleResult:
    """What Istio says about one set of objects."""

    name: str
    validation: list[dict] = field(default_factory=list)  # {object, errors, warnings} per Istio object
    analysis: list[dict] = field(default_factory=list)    # {code, level, object, message}
    problems: list[str] = field(default_factory=list)     # objects the oracle could not decode

    def rejections(self) -> list[str]:
        """Every admission error, as 'Kind/ns/name: message'."""
        return [f"{item['object']}: {error}" for item in self.validation for error in item["errors"]] + self.problems


def run_oracle(cases: dict[str, list[dict]]) -> dict[str, OracleResult]:
    """Istio's verdict on each named set of objects, all in one run of the oracle."""
    payload = {"cases": [{"name": name, "objects": objects} for name, objects in cases.items()]}
    result = subprocess.run([str(peer_binary("istio"))], input=json.dumps(payload), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"the Istio oracle failed: {result.stderr[-2000:]}"
    output = json.loads(result.stdout)["cases"]
    assert [c["name"] for c in output] == list(cases), "the oracle must answer every case, in order"
    return {c["name"]: OracleResult(c["name"], c["validation"], c["analysis"], c["problems"]) for c in output}
