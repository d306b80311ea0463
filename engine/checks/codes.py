"""The finding codes: data only, so the command line can list them without loading the analyzers."""
from __future__ import annotations

from engine.records import FrozenRecord


ERROR = "error"
WARNING = "warning"


class Code(FrozenRecord):
    __slots__ = ("code", "name", "severity", "summary")

    def __init__(self, code: str, name: str, severity: str, summary: str):
        self._freeze(code, name, severity, summary)


#: Every finding code graylane emits. Codes are stable: never renumbered or reused.
CODES: dict[str, Code] = {c.code: c for c in (
    Code("GL0001", "SchemaViolation", ERROR, "the document does not match the JSON Schema of its kind "
         "(unknown field, wrong type, missing required field, ...)"),
    Code("GL0002", "DuplicateObject", ERROR, "the same object (group, kind, namespace, name) appears more than once "
         "in the inputs"),
    Code("GL0003", "ObjectTooLarge", ERROR, "the object is larger than the 1.5 MiB the API server can store (etcd's "
         "request limit), e.g. an EnvoyFilter whose Lua code has grown with thousands of coloring rules"),
    Code("GL0101", "WeightSum", ERROR, "the route weights of an http/tcp/tls rule do not sum to 100"),
    Code("GL0102", "WeightRange", ERROR, "a weight or traffic percentage is not an integer from 0 to 100"),
    Code("GL0103", "MatchType", ERROR, "a match type is outside the enum (Kruise: Exact, PathPrefix, "
         "RegularExpression; Istio StringMatch: exact, prefix, regex)"),
    Code("GL0104", "TooManyMatches", ERROR, "more than 16 matches in a strategy or step, or more than 16 headers/"
         "query parameters in one match"),
    Code("GL0105", "HeaderNameNotLowercase", WARNING, "a matched header name is not lowercase (HTTP header names are "
         "case-insensitive; Envoy compares them in lowercase)"),
    Code("GL0106", "InvalidRegex", ERROR, "a regular expression is not valid RE2 syntax (Envoy rejects backreferences, "
         "lookarounds, possessive quantifiers, ...)"),
    Code("GL0107", "UnreachableRule", WARNING, "an http rule (or one of its matches) can never match: an earlier rule "
         "without match, or with a broader match, catches every such request first"),
    Code("GL0108", "HeaderValueInvalid", ERROR, "a header value to set or add is one Istio rejects: a control "
         "character (newline), or a '%' that does not start a %VARIABLE% expression (a literal percent sign is '%%')"),
    Code("GL0109", "HeaderOperationInvalid", ERROR, "a header operation Istio rejects: an empty name, a ':' "
         "pseudo-header, removing (or setting in a response) the Host header, or the authority set in two places "
         "of one rule"),
    Code("GL0110", "HeaderNameInvalid", ERROR, "a matched header name is not an HTTP token (nor a pseudo-header)"),
    Code("GL0111", "RegexLimits", ERROR, "a regex match is empty or longer than Istio's 1024 characters, or a "
         "prefix match (other than on the path) is empty"),
    Code("GL0112", "DuplicateHeaderCondition", ERROR, "one match tests the same header twice (names differing only "
         "in case are the same header): the VirtualService can keep only one of the conditions"),
    Code("GL0201", "SubsetNotFound", ERROR, "a VirtualService destination subset is not defined by the "
         "DestinationRule of that host"),
    Code("GL0202", "DestinationRuleNotFound", WARNING, "a VirtualService destination names a subset, but no "
         "DestinationRule for that host is among the inputs"),
    Code("GL0203", "DuplicateSubset", ERROR, "two subsets of a DestinationRule have the same name"),
    Code("GL0204", "SubsetWithoutLabels", WARNING, "a DestinationRule subset has no labels, so it selects every pod "
         "of the service (stable and canary alike)"),
    Code("GL0205", "InvalidLabel", ERROR, "a label key or value Istio or Kubernetes rejects (subset labels, "
         "sourceLabels, the graylane.io/canary-subset-labels annotation, an EnvoyFilter's workloadSelector, a "
         "Rollout's patchPodTemplateMetadata, a FullLinkGray's labels and gateway selector)"),
    Code("GL0301", "NetworkRefNotFound", ERROR, "a TrafficRouting/Rollout references a network object "
         "(customNetworkRefs, ingress) that is not among the inputs"),
    Code("GL0302", "ServiceNotRouted", ERROR, "a TrafficRouting/Rollout service is not a destination host of the "
         "VirtualService it references"),
    Code("GL0303", "DestinationRuleHostMismatch", WARNING, "a DestinationRule referenced by a TrafficRouting/Rollout "
         "is for another host than its service"),
    Code("GL0304", "CanarySubsetUndefined", WARNING, "a TrafficRouting (or a Rollout with "
         "disableGenerateCanaryService) routes to the service's subset \"canary\", but no DestinationRule of the "
         "service is referenced or defines that subset (requests to it would fail with 503)"),
    Code("GL0305", "WeightIgnoredByMatches", WARNING, "a TrafficRouting strategy or Rollout step sets both a weight "
         "(traffic) and matches; matches take precedence (as in Kruise), so the weight is ignored"),
    Code("GL0306", "MatchFieldNotPortable", WARNING, "a rollouts.kruise.io/v1alpha1 TrafficRouting or Rollout match "
         "uses path or queryParams; graylane reads them, but Kruise's v1alpha1 API keeps only headers and drops them"),
    Code("GL0401", "LaneLeak", ERROR, "an http rule that routes to a service's canary (subset canary or gray, or a "
         "*-canary host) catches requests that the rules after it would send to another service (or answer with "
         "404, a redirect or a direct response)"),
    Code("GL0402", "RenderedSubsetUndefined", ERROR, "render would route requests to a subset that no "
         "DestinationRule among the inputs defines (every such request would get 503)"),
    Code("GL0403", "RenderedSubsetWithoutPods", ERROR, "render would route requests to a subset that selects none "
         "of the pods of the service's workloads among the inputs (503 no healthy upstream)"),
    Code("GL0404", "LaneMatchInexpressible", ERROR, "a lane match cannot be ANDed with the match of a rule that "
         "routes to the service in one Istio match (a regex against a prefix or another regex, a lane path against "
         "ignoreUriCase), so the built-in script refuses to scope the lane there"),
    Code("GL0501", "GatewayNotFound", WARNING, "a VirtualService names a Gateway that is not among the inputs "
         "(istioctl IST0101)"),
    Code("GL0502", "HostNotInGateway", WARNING, "a Gateway a VirtualService is bound to serves none of its hosts "
         "(IST0132)"),
    Code("GL0503", "ConflictingMeshHosts", ERROR, "two VirtualServices route the same host for the mesh; Istio uses "
         "only one of them (IST0109)"),
    Code("GL0504", "MeshWildcardHost", ERROR, "a VirtualService bound to the mesh has host '*' (Istio refuses it)"),
    Code("GL0505", "DestinationPortRequired", ERROR, "a destination has no port but its Service has several, or a "
         "port the Service does not have (IST0112, IST0101)"),
    Code("GL0506", "SubsetSelectsNoPods", WARNING, "a DestinationRule subset selects no pod of its Service among the "
         "inputs (IST0173, scoped to the Service)"),
    Code("GL0507", "EnvoyFilterSelectsNoPods", WARNING, "an EnvoyFilter's workloadSelector matches no pod of its "
         "namespace among the inputs (wrong labels, or the EnvoyFilter is in the wrong namespace)"),
    Code("GL0508", "EnvoyFilterDeprecated", WARNING, "an EnvoyFilter uses a deprecated filter name (envoy.lua)"),
    Code("GL0509", "EnvoyFilterRelativeOperation", WARNING, "an EnvoyFilter patch with a relative operation "
         "(INSERT_BEFORE, ...) has no priority, so its order is undefined (IST0151)"),
    Code("GL0510", "HostNotExpanded", WARNING, "a host written name.namespace or name.namespace.svc: Istio expands "
         "only names without dots, so it names no Service"),
    Code("GL0511", "EnvoyFilterV2Type", ERROR, "an EnvoyFilter names an Envoy v2 API type, which Envoy no longer has "
         "(Istio refuses it)"),
    Code("GL0512", "ServiceHostNotFound", WARNING, "a destination host names a Service (a short name resolves in the "
         "namespace of the VirtualService) that is not among the inputs while a Service of that name in another "
         "namespace, or other Services of that namespace, are (IST0101)"),
    Code("GL0601", "ArgoRolloutInvalid", ERROR, "an Argo Rollout's canary.trafficRouting.istio or steps break Argo's "
         "rules (virtualService or virtualServices, canaryService and stableService or a destinationRule, header and "
         "mirror routes listed in managedRoutes, setWeight from 0 to 100)"),
    Code("GL0602", "ArgoNetworkRefNotFound", ERROR, "a VirtualService or DestinationRule an Argo Rollout references "
         "is not among the inputs"),
    Code("GL0603", "ArgoStepRefused", ERROR, "Argo's controller would refuse a step on these VirtualServices (a "
         "patched route without both the stable and the canary destination, a route name that is not there, "
         "several routes when routes is omitted)"),
)}
