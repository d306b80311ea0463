"""Tests for engine.checks.schemas: realistic documents pass, broken ones fail at the right path."""

from __future__ import annotations

import copy
import json
import os

from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

import engine.checks.schemas as schemas
from engine.checks.schemas import SCHEMA_NAMES, load_schema, schema_for, validator_for


# --------------------------------------------------------------------------- helpers


def _flatten(errors):
    for error in errors:
        yield error
        yield from _flatten(error.context or ())


def error_keys(name: str, doc: dict) -> set[tuple[tuple, str]]:
    """{(instance path, failing keyword)} for every error, including oneOf/anyOf sub-errors."""
    return {(tuple(e.absolute_path), e.validator) for e in _flatten(validator_for(name).iter_errors(doc))}


def assert_valid(name: str, doc: dict) -> None:
    errors = sorted(validator_for(name).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def assert_invalid(name: str, doc: dict, path: tuple, keyword: str) -> None:
    keys = error_keys(name, doc)
    assert (path, keyword) in keys, f"expected {keyword!r} at {list(path)}, got {sorted(keys, key=str)}"


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def case_id(d: dict) -> str:
    return f"{d['apiVersion'].split('/')[-1]}-{d['kind']}-{d['metadata']['name']}"


# --------------------------------------------------------------------------- valid documents

VIRTUAL_SERVICES = docs(
    r"""
# Istio reference: VirtualService
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews-route
spec:
  hosts:
  - reviews.prod.svc.cluster.local
  http:
  - name: "reviews-v2-routes"
    match:
    - uri:
        prefix: "/wpcatalog"
    - uri:
        prefix: "/consumercatalog"
    rewrite:
      uri: "/newcatalog"
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v2
  - name: "reviews-v1-route"
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v1
    mirror:
      host: reviews.prod.svc.cluster.local
      subset: v3
    mirrorPercentage:
      value: 1.5
---
# Istio reference: Headers
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews-route-headers
  namespace: foo
spec:
  hosts:
  - reviews.prod.svc.cluster.local
  http:
  - headers:
      request:
        set:
          test: "true"
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v2
      weight: 25
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v1
      headers:
        response:
          remove:
          - foo
      weight: 75
---
# Istio reference: HTTPMatchRequest, HTTPRetry, HTTPFaultInjection, CorsPolicy
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings-route
spec:
  hosts:
  - ratings.prod.svc.cluster.local
  http:
  - match:
    - headers:
        end-user:
          exact: jason
        x-present: {}
      uri:
        prefix: "/ratings/v2/"
      ignoreUriCase: true
      queryParams:
        debug:
          regex: "\\d+$"
      withoutHeaders:
        x-internal:
          prefix: "yes"
      sourceLabels:
        env: prod
      sourceNamespace: prod
      statPrefix: ratings-v2
      port: 9080
    route:
    - destination:
        host: ratings.prod.svc.cluster.local
        subset: v1
        port:
          number: 9080
    timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,refused-stream
      retryRemoteLocalities: true
      retryIgnorePreviousHosts: true
      backoff: 100ms
    fault:
      delay:
        percentage:
          value: 0.1
        fixedDelay: 5s
      abort:
        percentage:
          value: 0.1
        httpStatus: 400
    corsPolicy:
      allowOrigins:
      - exact: https://example.com
      - regex: "https://.*\\.example\\.org"
      allowMethods:
      - POST
      - GET
      allowCredentials: false
      allowHeaders:
      - X-Foo-Bar
      exposeHeaders:
      - X-Trace
      maxAge: "24h"
      unmatchedPreflights: IGNORE
    mirrors:
    - destination:
        host: ratings-shadow.prod.svc.cluster.local
      percentage:
        value: 50
---
# Istio reference: Delegate
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts:
  - "bookinfo.com"
  gateways:
  - mygateway
  http:
  - match:
    - uri:
        prefix: "/productpage"
    delegate:
       name: productpage
       namespace: nsa
  - match:
    - uri:
        prefix: "/reviews"
    delegate:
        name: reviews
        namespace: nsb
---
# Istio reference: TLSRoute + TCPRoute
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: bookinfo-sni
spec:
  hosts:
  - "*.bookinfo.com"
  - mongo.prod.svc.cluster.local
  gateways:
  - mygateway
  tls:
  - match:
    - port: 443
      sniHosts:
      - login.bookinfo.com
    route:
    - destination:
        host: login.prod.svc.cluster.local
  tcp:
  - match:
    - port: 27017
      destinationSubnets: ["10.0.0.0/16"]
    route:
    - destination:
        host: mongo.backup.svc.cluster.local
        port:
          number: 5555
  exportTo: ["."]
---
# Istio reference: HTTPDirectResponse + HTTPRedirect
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings-direct
spec:
  hosts:
  - ratings.prod.svc.cluster.local
  http:
  - match:
    - uri:
        exact: /v1/getProductRatings
    directResponse:
      status: 503
      body:
        string: "{\"error\": \"unknown error\"}"
    headers:
      response:
        set:
          content-type: "text/plain"
  - match:
    - uri:
        exact: /v1/bytes
    directResponse:
      status: 503
      body:
        bytes: "dW5rbm93biBlcnJvcg=="
  - match:
    - uri:
        exact: /v1/getRatings
    redirect:
      uri: /v1/bookRatings
      authority: newratings.default.svc.cluster.local
      derivePort: FROM_REQUEST_PORT
      scheme: https
      redirectCode: 302
  - match:
    - uri:
        regex: "^/service/([^/]+)(/.*)$"
    rewrite:
      uriRegexRewrite:
        match: "^/service/([^/]+)(/.*)$"
        rewrite: "/customprefix/\\2/\\1"
    route:
    - destination:
        host: ratings.prod.svc.cluster.local
---
# Full-link gray: entry VirtualService with gateways and the version-base subset
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: vs-mocka
  namespace: gray-demo
  labels:
    app: mocka
  annotations:
    rollouts.kruise.io/original-spec-configuration: '{"spec":{"hosts":["mocka"]}}'
spec:
  hosts:
  - mocka
  - mocka.example.com
  gateways:
  - istio-system/gray-gateway
  - mesh
  http:
  - name: gray
    match:
    - headers:
        x-gray-tag:
          exact: gray
    route:
    - destination:
        host: mocka
        subset: version-gray
  - name: base
    route:
    - destination:
        host: mocka
        subset: version-base
      weight: 100
---
# Kruise docs: vs-demo after the 50% step
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: vs-demo
spec:
  gateways:
  - simple-gateway
  hosts:
  - '*'
  http:
  - route:
    - destination:
        host: service-demo
        subset: base
      weight: 50
    - destination:
        host: service-demo
        subset: canary
      weight: 50
"""
)

DESTINATION_RULES = docs(
    r"""
# Istio reference: DestinationRule
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: bookinfo-ratings
spec:
  host: ratings.prod.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
  subsets:
  - name: testversion
    labels:
      version: v3
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: bookinfo-ratings-port
spec:
  host: ratings.prod.svc.cluster.local
  trafficPolicy: # Apply to all ports
    portLevelSettings:
    - port:
        number: 80
      loadBalancer:
        simple: LEAST_REQUEST
    - port:
        number: 9080
      loadBalancer:
        simple: ROUND_ROBIN
---
# Istio reference: ConsistentHashLB, ConnectionPoolSettings, OutlierDetection
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews-cb-policy
spec:
  host: reviews.prod.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie:
          name: user
          ttl: 0s
          attributes:
          - name: SameSite
            value: Strict
          - name: Secure
        ringHash:
          minimumRingSize: 1024
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        tcpKeepalive:
          time: 7200s
          interval: 75s
          probes: 9
        maxConnectionDuration: 1h
        idleTimeout: 0s
      http:
        http1MaxPendingRequests: 1024
        http2MaxRequests: 1000
        maxRequestsPerConnection: 10
        maxRetries: 3
        idleTimeout: 1.5s
        h2UpgradePolicy: UPGRADE
        maxConcurrentStreams: 100
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 5
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 50
      minHealthPercent: 0
---
# Istio reference: ClientTLSSettings, LocalityLoadBalancerSetting
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: db-mtls
spec:
  host: mydbserver.prod.svc.cluster.local
  exportTo: ["."]
  workloadSelector:
    matchLabels:
      app: ratings
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: /etc/certs/myclientcert.pem
      privateKey: /etc/certs/client_private_key.pem
      caCertificates: /etc/certs/rootcacerts.pem
      subjectAltNames: ["db.prod"]
      sni: db.prod
      insecureSkipVerify: false
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        enabled: true
        distribute:
        - from: us-west/zone1/*
          to:
            "us-west/zone1/*": 80
            "us-west/zone2/*": 20
      warmup:
        duration: 60s
        minimumPercent: 10
        aggression: 1.0
---
# Tunnel, PROXY protocol, retry budget
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: tunnel-egress
spec:
  host: external.example.com
  trafficPolicy:
    tunnel:
      protocol: CONNECT
      targetHost: 10.0.0.8
      targetPort: 8443
    proxyProtocol:
      version: V2
    retryBudget:
      percent: 20
      minRetryConcurrency: 3
    loadBalancer:
      localityLbSetting:
        failoverPriority:
        - topology.istio.io/network
        - topology.kubernetes.io/region
        failover:
        - from: us-east
          to: eu-west
---
# Full-link gray: DestinationRule for mocka
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: dr-mocka
  namespace: gray-demo
spec:
  host: mocka
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
  subsets:
  - name: version-base
    labels:
      version: base
  - name: version-gray
    labels:
      version: gray
      istio.service.tag: gray
---
# Kruise docs: dr-demo
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: dr-demo
spec:
  host: service-demo
  subsets:
  - name: base
    labels:
      version: base
"""
)

LUA_COLORING = r"""
function envoy_on_request(handle)
  local uid = handle:headers():get("x-user-id")
  if uid ~= nil and string.sub(uid, -1) == "7" then
    handle:headers():replace("x-gray-tag", "gray")
  end
end
"""

ENVOY_FILTERS = docs(
    r"""
# Full-link gray: coloring filter on the ingress gateway
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: gray-coloring
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  priority: -10
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: envoy.filters.http.router
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.lua.gray-coloring
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          inlineCode: LUA_PLACEHOLDER
---
# Istio reference: EnvoyFilter examples (inbound Lua, cluster ADD, network filter MERGE)
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: reviews-lua
  namespace: bookinfo
spec:
  workloadSelector:
    labels:
      app: reviews
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      proxy:
        proxyVersion: '^1\.2.*'
        metadata:
          ISTIO_VERSION: "1.24"
      listener:
        portNumber: 8080
        filterChain:
          name: virtualInbound
          sni: reviews.bookinfo
          transportProtocol: tls
          applicationProtocols: "h2,http/1.1"
          destinationPort: 8080
          filter:
            name: "envoy.filters.network.http_connection_manager"
            subFilter:
              name: "envoy.filters.http.router"
    patch:
      operation: INSERT_BEFORE
      filterClass: AUTHZ
      value:
       name: envoy.lua
       typed_config:
          "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
          defaultSourceCode:
            inlineString: |
              function envoy_on_request(request_handle)
                request_handle:logInfo("hello")
              end
  - applyTo: CLUSTER
    match:
      context: SIDECAR_OUTBOUND
    patch:
      operation: ADD
      value:
        name: "lua_cluster"
        type: STRICT_DNS
        connect_timeout: 0.5s
        lb_policy: ROUND_ROBIN
        load_assignment:
          cluster_name: lua_cluster
          endpoints:
          - lb_endpoints:
            - endpoint:
                address:
                  socket_address:
                    protocol: TCP
                    address: "internal.org.net"
                    port_value: 8888
  - applyTo: NETWORK_FILTER
    match:
      context: SIDECAR_OUTBOUND
      listener:
        name: 0.0.0.0_9080
        listenerFilter: envoy.filters.listener.tls_inspector
    patch:
      operation: MERGE
      value:
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          common_http_protocol_options:
            idle_timeout: 30s
  - applyTo: HTTP_ROUTE
    match:
      context: GATEWAY
      routeConfiguration:
        portNumber: 443
        portName: https
        gateway: istio-system/gray-gateway
        name: https.443.https.gray-gateway.istio-system
        vhost:
          name: "mocka.example.com:443"
          domainName: mocka.example.com
          route:
            name: default
            action: ROUTE
    patch:
      operation: MERGE
      value:
        route:
          timeout: 5s
  - applyTo: CLUSTER
    match:
      cluster:
        service: mocka.gray-demo.svc.cluster.local
        subset: version-gray
        portNumber: 80
        name: outbound|80|version-gray|mocka.gray-demo.svc.cluster.local
    patch:
      operation: REMOVE
---
# targetRefs + waypoint match
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: waypoint-lua
spec:
  targetRefs:
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: waypoint
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: WAYPOINT
      waypoint:
        portNumber: 8080
        route:
          name: default
        filter:
          name: envoy.filters.network.http_connection_manager
          subFilter:
            name: envoy.filters.http.router
    patch:
      operation: INSERT_FIRST
      value:
        name: envoy.filters.http.lua
"""
)
ENVOY_FILTERS[0]["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["inlineCode"] = LUA_COLORING

GATEWAYS = docs(
    r"""
# Istio reference: Gateway
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata:
  name: my-gateway
  namespace: some-config-namespace
spec:
  selector:
    app: my-gateway-controller
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - uk.bookinfo.com
    - eu.bookinfo.com
    tls:
      httpsRedirect: true # sends 301 redirect for http requests
  - port:
      number: 443
      name: https-443
      protocol: HTTPS
    hosts:
    - uk.bookinfo.com
    - eu.bookinfo.com
    tls:
      mode: SIMPLE # enables HTTPS on this port
      serverCertificate: /etc/certs/servercert.pem
      privateKey: /etc/certs/privatekey.pem
  - port:
      number: 9443
      name: https-9443
      protocol: HTTPS
    hosts:
    - "bookinfo-namespace/*.bookinfo.com"
    tls:
      mode: SIMPLE # enables HTTPS on this port
      credentialName: bookinfo-secret # fetches certs from Kubernetes secret
  - port:
      number: 9080
      name: http-wildcard
      protocol: HTTP
    hosts:
    - "*"
  - port:
      number: 2379 # to expose internal service via external port 2379
      name: mongo
      protocol: MONGO
    hosts:
    - "*"
  - port:
      number: 8443
      name: https-mtls
      protocol: HTTPS
      targetPort: 8443
    bind: 0.0.0.0
    name: mtls-server
    hosts:
    - "*.example.com"
    tls:
      mode: MUTUAL
      credentialNames: [example-rsa, example-ecdsa]
      caCertCredentialName: example-ca
      subjectAltNames: ["spiffe://cluster.local/ns/default/sa/client"]
      minProtocolVersion: TLSV1_2
      maxProtocolVersion: TLSV1_3
      cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]
  - port:
      number: 15443
      name: tls-passthrough
      protocol: TLS
    hosts:
    - "*.local"
    tls:
      mode: AUTO_PASSTHROUGH
---
# Kruise docs: simple-gateway
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata:
  name: simple-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
# Full-link gray entry gateway
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gray-gateway
  namespace: istio-system
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    hosts:
    - "gray-demo/mocka.example.com"
    tls:
      mode: SIMPLE
      tlsCertificates:
      - serverCertificate: /etc/certs/rsa.pem
        privateKey: /etc/certs/rsa.key
"""
)

TRAFFIC_ROUTINGS = docs(
    r"""
# Kruise docs: API Specifications (independent traffic routing)
apiVersion: rollouts.kruise.io/v1alpha1
kind: TrafficRouting
metadata:
  name: mse-traffic
spec:
  objectRef:
  - service: spring-cloud-a
    ingress:
      classType: mse
      name: spring-cloud-a
    gracePeriodSeconds: 10
  strategy:
    matches:
    - headers:
      - type: Exact
        name: User-Agent
        value: Andriod
    requestHeaderModifier:
      set:
      - name: x-mse-tag
        value: gray
---
# Istio custom network refs (VirtualService + DestinationRule), weight-based
apiVersion: rollouts.kruise.io/v1alpha1
kind: TrafficRouting
metadata:
  name: tr-mocka
  namespace: gray-demo
spec:
  objectRef:
  - service: mocka
    customNetworkRefs:
    - apiVersion: networking.istio.io/v1beta1
      kind: VirtualService
      name: vs-mocka
    - apiVersion: networking.istio.io/v1beta1
      kind: DestinationRule
      name: dr-mocka
  strategy:
    weight: 20
status:
  observedGeneration: 3
  phase: Progressing
  message: "traffic routing in progress"
---
# Path, query parameter and regex header matches with a full header modifier
apiVersion: rollouts.kruise.io/v1alpha1
kind: TrafficRouting
metadata:
  name: tr-matches
spec:
  objectRef:
  - service: mocka
    gateway:
      httpRouteName: mocka-route
  strategy:
    matches:
    - path:
        type: PathPrefix
        value: /api/v2
      headers:
      - name: x-gray-tag
        value: gray
      - type: RegularExpression
        name: user-agent
        value: ".*Android.*"
      queryParams:
      - type: Exact
        name: gray
        value: "true"
    - path:
        type: RegularExpression
        value: "^/beta/.*"
    requestHeaderModifier:
      set:
      - name: x-gray-tag
        value: gray
      add:
      - name: x-gray-lane
        value: lane-1
      remove: ["x-debug"]
"""
)

ROLLOUTS_V1BETA1 = docs(
    r"""
# Kruise docs: API Specifications
apiVersion: rollouts.kruise.io/v1beta1
kind: Rollout
metadata:
  name: rollouts-demo
  namespace: default
spec:
  workloadRef:
    apiVersion: apps/v1
    kind: Deployment
    name: echoserver
  strategy:
    canary:
      steps:
      - traffic: 5%
        pause: {}
        replicas: 1
      - traffic: 50%
        replicas: 50%
        pause:
          duration: 7200
      - traffic: 100%
        replicas: 100%
      trafficRoutings:
      - service: echoserver
        ingress:
          name: echoserver
        gracePeriodSeconds: 10
---
# Kruise docs: Traffic Routing with Istio (VirtualService + DestinationRule)
apiVersion: rollouts.kruise.io/v1beta1
kind: Rollout
metadata:
  name: rollouts-demo-istio
spec:
  workloadRef:
    apiVersion: apps/v1
    kind: Deployment
    name: workload-demo
  strategy:
    canary:
      enableExtraWorkloadForCanary: true
      disableGenerateCanaryService: true
      failureThreshold: 20%
      steps:
      - replicas: 1
        matches:
        - headers:
          - type: Exact
            name: version
            value: canary
      - traffic: 50%
        replicas: 50%
      - traffic: 80%
        replicas: 80%
        requestHeaderModifier:
          set:
          - name: x-gray-tag
            value: gray
      trafficRoutings:
      - service: service-demo
        customNetworkRefs:
        - apiVersion: networking.istio.io/v1beta1
          kind: VirtualService
          name: vs-demo
        - apiVersion: networking.istio.io/v1beta1
          kind: DestinationRule
          name: dr-demo
      patchPodTemplateMetadata:
        labels:
          istio.service.tag: gray
          version: canary
        annotations:
          sidecar.istio.io/inject: "true"
---
# Kruise docs: End to End Canary Release (shared TrafficRouting)
apiVersion: rollouts.kruise.io/v1beta1
kind: Rollout
metadata:
  name: rollout-a
spec:
  disabled: false
  workloadRef:
    apiVersion: apps/v1
    kind: Deployment
    name: spring-cloud-a
  strategy:
    paused: false
    canary:
      enableExtraWorkloadForCanary: true
      steps:
      - pause: {}
        replicas: 1
      patchPodTemplateMetadata:
        labels:
          alicloud.service.tag: gray
          opensergo.io/canary-gray: gray
      trafficRoutingRef: mse-traffic
---
# Kruise docs: blue-green (loosely checked)
apiVersion: rollouts.kruise.io/v1beta1
kind: Rollout
metadata:
  name: rollouts-bluegreen
spec:
  workloadRef:
    apiVersion: apps/v1
    kind: Deployment
    name: echoserver
  strategy:
    blueGreen:
      steps:
      - replicas: 100%
        traffic: 0%
      - replicas: 100%
        traffic: 100%
      trafficRoutings:
      - service: echoserver
        ingress:
          classType: nginx
          name: echoserver
      someFutureBlueGreenField: true
status:
  phase: Healthy
  canaryStatus:
    currentStepIndex: 2
"""
)

ROLLOUTS_V1ALPHA1 = docs(
    r"""
# Kruise docs: API Specifications (v1alpha1)
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata:
  name: rollouts-demo
  namespace: default
  annotations:
    rollouts.kruise.io/rolling-style: partition
spec:
  objectRef:
    workloadRef:
      apiVersion: apps/v1
      kind: Deployment
      name: echoserver
  strategy:
    canary:
      steps:
      - weight: 5
        pause: {}
        replicas: 1
      - replicas: 50%
        pause:
          duration: 7200
      - replicas: 100%
      trafficRoutings:
      - service: echoserver
        ingress:
          name: echoserver
---
# Kruise docs: Traffic Routing with Istio API (v1alpha1)
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata:
  name: rollouts-demo-istio
  annotations:
    rollouts.kruise.io/rolling-style: canary
spec:
  objectRef:
    workloadRef:
      apiVersion: apps/v1
      kind: Deployment
      name: workload-demo
  strategy:
    canary:
      steps:
      - replicas: 1
        matches:
        - headers:
          - type: Exact
            name: version
            value: canary
      - weight: 50
      - weight: 80
      trafficRoutings:
      - service: mocka
        customNetworkRefs:
        - apiVersion: networking.istio.io/v1alpha3
          kind: VirtualService
          name: vs-demo
      patchPodTemplateMetadata:
        labels:
          opensergo.io/canary-gray: gray
"""
)

VALID = (
    [("virtualservice", d) for d in VIRTUAL_SERVICES]
    + [("destinationrule", d) for d in DESTINATION_RULES]
    + [("envoyfilter", d) for d in ENVOY_FILTERS]
    + [("gateway", d) for d in GATEWAYS]
    + [("trafficrouting", d) for d in TRAFFIC_ROUTINGS]
    + [("rollout", d) for d in ROLLOUTS_V1BETA1]
    + [("rollout-v1alpha1", d) for d in ROLLOUTS_V1ALPHA1]
    + [("fulllinkgray", yaml.safe_load(p.read_text()))  # graylane's own spec: the samples (tests/test_chain.py)
       for p in sorted((Path(__file__).parent.parent / "samples").glob("*/fulllink.yaml"))]
)


@pytest.mark.parametrize(("name", "document"), VALID, ids=[f"{n}:{case_id(d)}" for n, d in VALID])
def test_valid_documents_pass(name, document):
    assert schema_for(document["apiVersion"], document["kind"]) == name
    assert_valid(name, document)


def test_every_schema_has_valid_examples():
    assert {name for name, _ in VALID} == set(SCHEMA_NAMES)


# --------------------------------------------------------------------------- invalid documents


def mutate(document: dict, change) -> dict:
    d = copy.deepcopy(document)
    change(d)
    return d


VS = VIRTUAL_SERVICES[6]  # vs-mocka
VS_RATINGS = VIRTUAL_SERVICES[2]
DR = DESTINATION_RULES[5]  # dr-mocka
DR_CB = DESTINATION_RULES[2]
EF = ENVOY_FILTERS[0]  # gray-coloring
GW = GATEWAYS[1]  # simple-gateway
TR = TRAFFIC_ROUTINGS[2]  # tr-matches
RO = ROLLOUTS_V1BETA1[1]  # istio rollout
RO_A1 = ROLLOUTS_V1ALPHA1[1]


def _set(path, value):
    def change(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _del(path):
    def change(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


def _seq(*changes):
    def change(d):
        for c in changes:
            c(d)
    return change


HTTP0 = ("spec", "http", 0)
ROUTE0 = HTTP0 + ("route", 0)
HEADER_MATCH = {"name": "x-gray-tag", "value": "gray"}

INVALID = [
    # ---- VirtualService
    ("vs-unknown-spec-field", "virtualservice", VS, _set(("spec", "host"), "mocka"), ("spec",), "additionalProperties"),
    ("vs-unknown-route-field", "virtualservice", VS, _set(HTTP0 + ("retry",), {"attempts": 1}), HTTP0, "additionalProperties"),
    ("vs-unknown-destination-field", "virtualservice", VS, _set(ROUTE0 + ("destination", "version"), "v1"),
     ROUTE0 + ("destination",), "additionalProperties"),
    ("vs-unknown-top-level-field", "virtualservice", VS, _set(("specs",), {}), (), "additionalProperties"),
    ("vs-weight-101", "virtualservice", VS, _set(ROUTE0 + ("weight",), 101), ROUTE0 + ("weight",), "maximum"),
    ("vs-weight-negative", "virtualservice", VS, _set(ROUTE0 + ("weight",), -1), ROUTE0 + ("weight",), "minimum"),
    ("vs-weight-string", "virtualservice", VS, _set(ROUTE0 + ("weight",), "50"), ROUTE0 + ("weight",), "type"),
    ("vs-missing-destination-host", "virtualservice", VS, _del(ROUTE0 + ("destination", "host")),
     ROUTE0 + ("destination",), "required"),
    ("vs-empty-destination-host", "virtualservice", VS, _set(ROUTE0 + ("destination", "host"), ""),
     ROUTE0 + ("destination", "host"), "minLength"),
    ("vs-missing-destination", "virtualservice", VS, _del(ROUTE0 + ("destination",)), ROUTE0, "required"),
    ("vs-mirror-missing-host", "virtualservice", VS, _set(HTTP0 + ("mirror",), {"subset": "version-base"}),
     HTTP0 + ("mirror",), "required"),
    ("vs-mirror-and-mirrors", "virtualservice", VS_RATINGS, _set(HTTP0 + ("mirror",), {"host": "shadow"}), HTTP0, "not"),
    ("vs-stringmatch-exact-and-prefix", "virtualservice", VS,
     _set(HTTP0 + ("match", 0, "uri"), {"exact": "/a", "prefix": "/b"}), HTTP0 + ("match", 0, "uri"), "maxProperties"),
    ("vs-header-stringmatch-two", "virtualservice", VS,
     _set(HTTP0 + ("match", 0, "headers", "x-gray-tag"), {"exact": "gray", "regex": "g.*"}),
     HTTP0 + ("match", 0, "headers", "x-gray-tag"), "maxProperties"),
    ("vs-stringmatch-unknown-kind", "virtualservice", VS,
     _set(HTTP0 + ("match", 0, "uri"), {"suffix": "/a"}), HTTP0 + ("match", 0, "uri"), "additionalProperties"),
    ("vs-empty-match", "virtualservice", VS, _set(HTTP0 + ("match", 0), {}), HTTP0 + ("match", 0), "minProperties"),
    ("vs-duration-no-unit", "virtualservice", VS, _set(HTTP0 + ("timeout",), "10"), HTTP0 + ("timeout",), "pattern"),
    ("vs-duration-words", "virtualservice", VS, _set(HTTP0 + ("timeout",), "10 seconds"), HTTP0 + ("timeout",), "pattern"),
    ("vs-duration-number", "virtualservice", VS, _set(HTTP0 + ("timeout",), 10), HTTP0 + ("timeout",), "type"),
    ("vs-duration-zero", "virtualservice", VS, _set(HTTP0 + ("timeout",), "0s"), HTTP0 + ("timeout",), "not"),
    ("vs-retry-bad-duration", "virtualservice", VS_RATINGS, _set(HTTP0 + ("retries", "perTryTimeout"), "2 s"),
     HTTP0 + ("retries", "perTryTimeout"), "pattern"),
    ("vs-bad-api-version", "virtualservice", VS, _set(("apiVersion",), "networking.istio.io/v2"), ("apiVersion",), "enum"),
    ("vs-wrong-kind", "virtualservice", VS, _set(("kind",), "DestinationRule"), ("kind",), "const"),
    ("vs-missing-metadata-name", "virtualservice", VS, _del(("metadata", "name")), ("metadata",), "required"),
    ("vs-bad-metadata-name", "virtualservice", VS, _set(("metadata", "name"), "VS_Mocka"), ("metadata", "name"), "pattern"),
    ("vs-label-not-string", "virtualservice", VS, _set(("metadata", "labels", "replicas"), 3),
     ("metadata", "labels", "replicas"), "type"),
    ("vs-missing-spec", "virtualservice", VS, _del(("spec",)), (), "required"),
    ("vs-route-and-redirect", "virtualservice", VS, _set(HTTP0 + ("redirect",), {"uri": "/x"}), HTTP0, "not"),
    ("vs-route-and-direct-response", "virtualservice", VS, _set(HTTP0 + ("directResponse",), {"status": 503}), HTTP0, "not"),
    ("vs-direct-response-status", "virtualservice", VIRTUAL_SERVICES[5],
     _set(HTTP0 + ("directResponse", "status"), 700), HTTP0 + ("directResponse", "status"), "maximum"),
    ("vs-redirect-port-and-derive-port", "virtualservice", VIRTUAL_SERVICES[5],
     _set(("spec", "http", 2, "redirect", "port"), 8443), ("spec", "http", 2, "redirect"), "not"),
    ("vs-bad-derive-port", "virtualservice", VIRTUAL_SERVICES[5],
     _set(("spec", "http", 2, "redirect", "derivePort"), "FROM_HEADER"), ("spec", "http", 2, "redirect", "derivePort"), "enum"),
    ("vs-fault-empty", "virtualservice", VS_RATINGS, _set(HTTP0 + ("fault",), {}), HTTP0 + ("fault",), "anyOf"),
    ("vs-fault-two-aborts", "virtualservice", VS_RATINGS, _set(HTTP0 + ("fault", "abort", "grpcStatus"), "UNAVAILABLE"),
     HTTP0 + ("fault", "abort"), "not"),
    ("vs-percentage-over-100", "virtualservice", VIRTUAL_SERVICES[0], _set(("spec", "http", 1, "mirrorPercentage", "value"), 150),
     ("spec", "http", 1, "mirrorPercentage", "value"), "maximum"),
    ("vs-mirror-percentage-over-100", "virtualservice", VS_RATINGS, _set(HTTP0 + ("mirrors", 0, "percentage", "value"), 101),
     HTTP0 + ("mirrors", 0, "percentage", "value"), "maximum"),
    ("vs-route-without-action", "virtualservice", VS, _del(HTTP0 + ("route",)), HTTP0, "anyOf"),
    ("vs-empty-route-list", "virtualservice", VS, _set(HTTP0 + ("route",), []), HTTP0 + ("route",), "minItems"),
    ("vs-rewrite-and-redirect", "virtualservice", VIRTUAL_SERVICES[5],
     _set(("spec", "http", 2, "rewrite"), {"uri": "/x"}), ("spec", "http", 2), "not"),
    ("vs-fault-and-direct-response", "virtualservice", VIRTUAL_SERVICES[5],
     _set(HTTP0 + ("fault",), {"abort": {"httpStatus": 500}}), HTTP0, "not"),
    ("vs-delegate-and-route", "virtualservice", VIRTUAL_SERVICES[3],
     _set(HTTP0 + ("route",), [{"destination": {"host": "productpage"}}]), HTTP0, "not"),
    ("vs-redirect-bad-scheme", "virtualservice", VIRTUAL_SERVICES[5], _set(("spec", "http", 2, "redirect", "scheme"), "ftp"),
     ("spec", "http", 2, "redirect", "scheme"), "enum"),
    ("vs-redirect-code-not-3xx", "virtualservice", VIRTUAL_SERVICES[5],
     _set(("spec", "http", 2, "redirect", "redirectCode"), 200), ("spec", "http", 2, "redirect", "redirectCode"), "anyOf"),
    ("vs-empty-redirect", "virtualservice", VIRTUAL_SERVICES[5], _set(("spec", "http", 2, "redirect"), {"redirectCode": 302}),
     ("spec", "http", 2, "redirect"), "anyOf"),
    ("vs-rewrite-uri-and-regex", "virtualservice", VIRTUAL_SERVICES[5],
     _set(("spec", "http", 3, "rewrite", "uri"), "/x"), ("spec", "http", 3, "rewrite"), "not"),
    ("vs-regex-rewrite-missing-rewrite", "virtualservice", VIRTUAL_SERVICES[5],
     _del(("spec", "http", 3, "rewrite", "uriRegexRewrite", "rewrite")), ("spec", "http", 3, "rewrite", "uriRegexRewrite"), "required"),
    ("vs-retries-disabled-with-retry-on", "virtualservice", VS_RATINGS, _set(HTTP0 + ("retries", "attempts"), 0),
     HTTP0 + ("retries",), "not"),
    ("vs-abort-status-out-of-range", "virtualservice", VS_RATINGS, _set(HTTP0 + ("fault", "abort", "httpStatus"), 99),
     HTTP0 + ("fault", "abort", "httpStatus"), "minimum"),
    ("vs-destination-host-wildcard", "virtualservice", VS, _set(ROUTE0 + ("destination", "host"), "*"),
     ROUTE0 + ("destination", "host"), "not"),
    ("vs-destination-bad-subset", "virtualservice", VS, _set(ROUTE0 + ("destination", "subset"), "version_gray"),
     ROUTE0 + ("destination", "subset"), "pattern"),
    ("vs-port-selector-zero", "virtualservice", VS, _set(ROUTE0 + ("destination", "port"), {"number": 0}),
     ROUTE0 + ("destination", "port", "number"), "minimum"),
    ("vs-port-selector-empty", "virtualservice", VS, _set(ROUTE0 + ("destination", "port"), {}),
     ROUTE0 + ("destination", "port"), "required"),
    ("vs-bad-source-namespace", "virtualservice", VS_RATINGS, _set(HTTP0 + ("match", 0, "sourceNamespace"), "Prod_NS"),
     HTTP0 + ("match", 0, "sourceNamespace"), "pattern"),
    ("vs-no-routes-at-all", "virtualservice", VS, _del(("spec", "http")), ("spec",), "anyOf"),
    ("vs-tcp-route-without-route", "virtualservice", VIRTUAL_SERVICES[4], _del(("spec", "tcp", 0, "route")),
     ("spec", "tcp", 0), "required"),
    ("vs-cors-bad-preflight", "virtualservice", VS_RATINGS, _set(HTTP0 + ("corsPolicy", "unmatchedPreflights"), "DROP"),
     HTTP0 + ("corsPolicy", "unmatchedPreflights"), "enum"),
    ("vs-port-out-of-range", "virtualservice", VS, _set(ROUTE0 + ("destination", "port"), {"number": 70000}),
     ROUTE0 + ("destination", "port", "number"), "maximum"),
    ("vs-tls-route-missing-sni", "virtualservice", VIRTUAL_SERVICES[4], _del(("spec", "tls", 0, "match", 0, "sniHosts")),
     ("spec", "tls", 0, "match", 0), "required"),
    ("vs-hosts-not-list", "virtualservice", VS, _set(("spec", "hosts"), "mocka"), ("spec", "hosts"), "type"),
    # ---- DestinationRule
    ("dr-unknown-spec-field", "destinationrule", DR, _set(("spec", "subset"), []), ("spec",), "additionalProperties"),
    ("dr-unknown-traffic-policy-field", "destinationrule", DR, _set(("spec", "trafficPolicy", "loadbalancer"), {}),
     ("spec", "trafficPolicy"), "additionalProperties"),
    ("dr-unknown-subset-field", "destinationrule", DR, _set(("spec", "subsets", 0, "weight"), 10),
     ("spec", "subsets", 0), "additionalProperties"),
    ("dr-missing-host", "destinationrule", DR, _del(("spec", "host")), ("spec",), "required"),
    ("dr-subset-missing-name", "destinationrule", DR, _del(("spec", "subsets", 0, "name")), ("spec", "subsets", 0), "required"),
    ("dr-subset-bad-name", "destinationrule", DR, _set(("spec", "subsets", 0, "name"), "Version_Base"),
     ("spec", "subsets", 0, "name"), "pattern"),
    ("dr-subset-label-not-string", "destinationrule", DR, _set(("spec", "subsets", 0, "labels", "version"), 1),
     ("spec", "subsets", 0, "labels", "version"), "type"),
    ("dr-bad-lb-enum", "destinationrule", DESTINATION_RULES[0],
     _set(("spec", "trafficPolicy", "loadBalancer", "simple"), "ROUNDROBIN"),
     ("spec", "trafficPolicy", "loadBalancer", "simple"), "enum"),
    ("dr-simple-and-consistent-hash", "destinationrule", DR_CB,
     _set(("spec", "trafficPolicy", "loadBalancer", "simple"), "RANDOM"), ("spec", "trafficPolicy", "loadBalancer"), "not"),
    ("dr-two-hash-keys", "destinationrule", DR_CB,
     _set(("spec", "trafficPolicy", "loadBalancer", "consistentHash", "useSourceIp"), True),
     ("spec", "trafficPolicy", "loadBalancer", "consistentHash"), "not"),
    ("dr-bad-duration", "destinationrule", DR_CB, _set(("spec", "trafficPolicy", "outlierDetection", "interval"), "5 m"),
     ("spec", "trafficPolicy", "outlierDetection", "interval"), "pattern"),
    ("dr-max-ejection-150", "destinationrule", DR_CB,
     _set(("spec", "trafficPolicy", "outlierDetection", "maxEjectionPercent"), 150),
     ("spec", "trafficPolicy", "outlierDetection", "maxEjectionPercent"), "maximum"),
    ("dr-bad-tls-mode", "destinationrule", DR, _set(("spec", "trafficPolicy", "tls", "mode"), "STRICT"),
     ("spec", "trafficPolicy", "tls", "mode"), "enum"),
    ("dr-tunnel-missing-port", "destinationrule", DESTINATION_RULES[4], _del(("spec", "trafficPolicy", "tunnel", "targetPort")),
     ("spec", "trafficPolicy", "tunnel"), "required"),
    ("dr-empty-traffic-policy", "destinationrule", DR, _set(("spec", "trafficPolicy"), {}),
     ("spec", "trafficPolicy"), "minProperties"),
    ("dr-empty-connection-pool", "destinationrule", DR, _set(("spec", "trafficPolicy", "connectionPool"), {}),
     ("spec", "trafficPolicy", "connectionPool"), "minProperties"),
    ("dr-port-level-without-port", "destinationrule", DESTINATION_RULES[1],
     _del(("spec", "trafficPolicy", "portLevelSettings", 0, "port")), ("spec", "trafficPolicy", "portLevelSettings", 0), "required"),
    ("dr-port-level-only-port", "destinationrule", DESTINATION_RULES[1],
     _del(("spec", "trafficPolicy", "portLevelSettings", 0, "loadBalancer")),
     ("spec", "trafficPolicy", "portLevelSettings", 0), "minProperties"),
    ("dr-negative-max-connections", "destinationrule", DR_CB,
     _set(("spec", "trafficPolicy", "connectionPool", "tcp", "maxConnections"), -1),
     ("spec", "trafficPolicy", "connectionPool", "tcp", "maxConnections"), "minimum"),
    ("dr-warmup-missing-duration", "destinationrule", DESTINATION_RULES[3],
     _del(("spec", "trafficPolicy", "loadBalancer", "warmup", "duration")),
     ("spec", "trafficPolicy", "loadBalancer", "warmup"), "required"),
    ("dr-bad-api-version", "destinationrule", DR, _set(("apiVersion",), "networking.istio.io/v1alpha2"), ("apiVersion",), "enum"),
    ("dr-selector-wildcard", "destinationrule", DESTINATION_RULES[3],
     _set(("spec", "workloadSelector", "matchLabels", "app"), "rat*"),
     ("spec", "workloadSelector", "matchLabels", "app"), "pattern"),
    # ---- EnvoyFilter
    ("ef-v1beta1-not-served", "envoyfilter", EF, _set(("apiVersion",), "networking.istio.io/v1beta1"), ("apiVersion",), "const"),
    ("ef-unknown-spec-field", "envoyfilter", EF, _set(("spec", "selector"), {"istio": "ingressgateway"}),
     ("spec",), "additionalProperties"),
    ("ef-unknown-filter-chain-field", "envoyfilter", EF,
     _set(("spec", "configPatches", 0, "match", "listener", "filterChain", "filters"), []),
     ("spec", "configPatches", 0, "match", "listener", "filterChain"), "additionalProperties"),
    ("ef-unknown-patch-field", "envoyfilter", EF, _set(("spec", "configPatches", 0, "patch", "values"), {}),
     ("spec", "configPatches", 0, "patch"), "additionalProperties"),
    ("ef-bad-context", "envoyfilter", EF, _set(("spec", "configPatches", 0, "match", "context"), "GATEWAYS"),
     ("spec", "configPatches", 0, "match", "context"), "enum"),
    ("ef-bad-apply-to", "envoyfilter", EF, _set(("spec", "configPatches", 0, "applyTo"), "HTTP_FILTERS"),
     ("spec", "configPatches", 0, "applyTo"), "enum"),
    ("ef-bad-operation", "envoyfilter", EF, _set(("spec", "configPatches", 0, "patch", "operation"), "INSERT"),
     ("spec", "configPatches", 0, "patch", "operation"), "enum"),
    ("ef-missing-patch-value", "envoyfilter", EF, _del(("spec", "configPatches", 0, "patch", "value")),
     ("spec", "configPatches", 0, "patch"), "required"),
    ("ef-patch-value-not-object", "envoyfilter", EF, _set(("spec", "configPatches", 0, "patch", "value"), "envoy.lua"),
     ("spec", "configPatches", 0, "patch", "value"), "type"),
    ("ef-missing-patch", "envoyfilter", EF, _del(("spec", "configPatches", 0, "patch")), ("spec", "configPatches", 0), "required"),
    ("ef-listener-and-cluster", "envoyfilter", EF, _set(("spec", "configPatches", 0, "match", "cluster"), {"name": "x"}),
     ("spec", "configPatches", 0, "match"), "not"),
    ("ef-waypoint-outside-waypoint-context", "envoyfilter", EF,
     _seq(_del(("spec", "configPatches", 0, "match", "listener")),
          _set(("spec", "configPatches", 0, "match", "waypoint"), {"portNumber": 8080})),
     ("spec", "configPatches", 0, "match", "context"), "const"),
    ("ef-waypoint-context-without-match", "envoyfilter", ENVOY_FILTERS[2],
     _del(("spec", "configPatches", 0, "match", "waypoint")), ("spec", "configPatches", 0, "match"), "required"),
    ("ef-selector-and-target-refs", "envoyfilter", EF,
     _set(("spec", "targetRefs"), [{"kind": "Gateway", "name": "waypoint"}]), ("spec",), "not"),
    ("ef-target-ref-namespace", "envoyfilter", ENVOY_FILTERS[2], _set(("spec", "targetRefs", 0, "namespace"), "other"),
     ("spec", "targetRefs", 0, "namespace"), "maxLength"),
    ("ef-bad-filter-class", "envoyfilter", EF, _set(("spec", "configPatches", 0, "patch", "filterClass"), "AUTH"),
     ("spec", "configPatches", 0, "patch", "filterClass"), "enum"),
    ("ef-priority-not-int", "envoyfilter", EF, _set(("spec", "priority"), "high"), ("spec", "priority"), "type"),
    # ---- Gateway
    ("gw-unknown-server-field", "gateway", GW, _set(("spec", "servers", 0, "tlsMode"), "SIMPLE"),
     ("spec", "servers", 0), "additionalProperties"),
    ("gw-unknown-spec-field", "gateway", GW, _set(("spec", "server"), []), ("spec",), "additionalProperties"),
    ("gw-port-missing-protocol", "gateway", GW, _del(("spec", "servers", 0, "port", "protocol")),
     ("spec", "servers", 0, "port"), "required"),
    ("gw-port-out-of-range", "gateway", GW, _set(("spec", "servers", 0, "port", "number"), 70000),
     ("spec", "servers", 0, "port", "number"), "maximum"),
    ("gw-missing-hosts", "gateway", GW, _del(("spec", "servers", 0, "hosts")), ("spec", "servers", 0), "required"),
    ("gw-empty-hosts", "gateway", GW, _set(("spec", "servers", 0, "hosts"), []), ("spec", "servers", 0, "hosts"), "minItems"),
    ("gw-bad-tls-mode", "gateway", GW, _set(("spec", "servers", 0, "tls"), {"mode": "STRICT"}),
     ("spec", "servers", 0, "tls", "mode"), "enum"),
    ("gw-credential-name-and-names", "gateway", GW,
     _set(("spec", "servers", 0, "tls"), {"mode": "SIMPLE", "credentialName": "a", "credentialNames": ["b"]}),
     ("spec", "servers", 0, "tls"), "not"),
    ("gw-too-many-credential-names", "gateway", GW,
     _set(("spec", "servers", 0, "tls"), {"mode": "SIMPLE", "credentialNames": ["a", "b", "c"]}),
     ("spec", "servers", 0, "tls", "credentialNames"), "maxItems"),
    ("gw-no-servers", "gateway", GW, _set(("spec", "servers"), []), ("spec", "servers"), "minItems"),
    ("gw-missing-servers", "gateway", GW, _del(("spec", "servers")), ("spec",), "required"),
    ("gw-bad-api-version", "gateway", GW, _set(("apiVersion",), "gateway.networking.k8s.io/v1"), ("apiVersion",), "enum"),
    # ---- TrafficRouting
    ("tr-header-match-type-prefix", "trafficrouting", TR,
     _set(("spec", "strategy", "matches", 0, "headers", 0, "type"), "Prefix"),
     ("spec", "strategy", "matches", 0, "headers", 0, "type"), "enum"),
    ("tr-path-match-type-prefix", "trafficrouting", TR, _set(("spec", "strategy", "matches", 0, "path", "type"), "Prefix"),
     ("spec", "strategy", "matches", 0, "path", "type"), "enum"),
    ("tr-query-match-type-prefix", "trafficrouting", TR,
     _set(("spec", "strategy", "matches", 0, "queryParams", 0, "type"), "PathPrefix"),
     ("spec", "strategy", "matches", 0, "queryParams", 0, "type"), "enum"),
    ("tr-17-matches", "trafficrouting", TR, _set(("spec", "strategy", "matches"), [{"headers": [HEADER_MATCH]}] * 17),
     ("spec", "strategy", "matches"), "maxItems"),
    ("tr-17-headers", "trafficrouting", TR, _set(("spec", "strategy", "matches", 0, "headers"), [HEADER_MATCH] * 17),
     ("spec", "strategy", "matches", 0, "headers"), "maxItems"),
    ("tr-17-query-params", "trafficrouting", TR, _set(("spec", "strategy", "matches", 0, "queryParams"), [HEADER_MATCH] * 17),
     ("spec", "strategy", "matches", 0, "queryParams"), "maxItems"),
    ("tr-17-set-headers", "trafficrouting", TR,
     _set(("spec", "strategy", "requestHeaderModifier", "set"), [HEADER_MATCH] * 17),
     ("spec", "strategy", "requestHeaderModifier", "set"), "maxItems"),
    ("tr-17-remove-headers", "trafficrouting", TR,
     _set(("spec", "strategy", "requestHeaderModifier", "remove"), ["x-a"] * 17),
     ("spec", "strategy", "requestHeaderModifier", "remove"), "maxItems"),
    ("tr-weight-101", "trafficrouting", TRAFFIC_ROUTINGS[1], _set(("spec", "strategy", "weight"), 101),
     ("spec", "strategy", "weight"), "maximum"),
    ("tr-weight-percent-string", "trafficrouting", TRAFFIC_ROUTINGS[1], _set(("spec", "strategy", "weight"), "20%"),
     ("spec", "strategy", "weight"), "type"),
    ("tr-unknown-strategy-field", "trafficrouting", TR, _set(("spec", "strategy", "traffic"), "20%"),
     ("spec", "strategy"), "additionalProperties"),
    ("tr-unknown-spec-field", "trafficrouting", TR, _set(("spec", "objectRefs"), []), ("spec",), "additionalProperties"),
    ("tr-unknown-match-field", "trafficrouting", TR, _set(("spec", "strategy", "matches", 0, "cookies"), []),
     ("spec", "strategy", "matches", 0), "additionalProperties"),
    ("tr-unknown-header-field", "trafficrouting", TR, _set(("spec", "strategy", "matches", 0, "headers", 0, "regex"), True),
     ("spec", "strategy", "matches", 0, "headers", 0), "additionalProperties"),
    ("tr-unknown-object-ref-field", "trafficrouting", TR, _set(("spec", "objectRef", 0, "type"), "istio"),
     ("spec", "objectRef", 0), "additionalProperties"),
    ("tr-header-missing-value", "trafficrouting", TR, _del(("spec", "strategy", "matches", 0, "headers", 0, "value")),
     ("spec", "strategy", "matches", 0, "headers", 0), "required"),
    ("tr-header-name-with-space", "trafficrouting", TR,
     _set(("spec", "strategy", "matches", 0, "headers", 0, "name"), "x gray"),
     ("spec", "strategy", "matches", 0, "headers", 0, "name"), "pattern"),
    ("tr-empty-object-ref", "trafficrouting", TR, _set(("spec", "objectRef"), []), ("spec", "objectRef"), "minItems"),
    ("tr-object-ref-missing-service", "trafficrouting", TR, _del(("spec", "objectRef", 0, "service")),
     ("spec", "objectRef", 0), "required"),
    ("tr-object-ref-two-providers", "trafficrouting", TR, _set(("spec", "objectRef", 0, "ingress"), {"name": "mocka"}),
     ("spec", "objectRef", 0), "oneOf"),
    ("tr-object-ref-no-provider", "trafficrouting", TR, _del(("spec", "objectRef", 0, "gateway")),
     ("spec", "objectRef", 0), "oneOf"),
    ("tr-custom-ref-missing-kind", "trafficrouting", TRAFFIC_ROUTINGS[1],
     _del(("spec", "objectRef", 0, "customNetworkRefs", 0, "kind")), ("spec", "objectRef", 0, "customNetworkRefs", 0), "required"),
    ("tr-ingress-missing-name", "trafficrouting", TRAFFIC_ROUTINGS[0], _del(("spec", "objectRef", 0, "ingress", "name")),
     ("spec", "objectRef", 0, "ingress"), "required"),
    ("tr-negative-grace-period", "trafficrouting", TRAFFIC_ROUTINGS[0], _set(("spec", "objectRef", 0, "gracePeriodSeconds"), -1),
     ("spec", "objectRef", 0, "gracePeriodSeconds"), "minimum"),
    ("tr-missing-strategy", "trafficrouting", TR, _del(("spec", "strategy")), ("spec",), "required"),
    ("tr-bad-api-version", "trafficrouting", TR, _set(("apiVersion",), "rollouts.kruise.io/v1beta1"), ("apiVersion",), "const"),
    # ---- Rollout v1beta1
    ("ro-traffic-without-percent", "rollout", RO, _set(("spec", "strategy", "canary", "steps", 1, "traffic"), "50"),
     ("spec", "strategy", "canary", "steps", 1, "traffic"), "pattern"),
    ("ro-traffic-101", "rollout", RO, _set(("spec", "strategy", "canary", "steps", 1, "traffic"), "101%"),
     ("spec", "strategy", "canary", "steps", 1, "traffic"), "pattern"),
    ("ro-traffic-integer", "rollout", RO, _set(("spec", "strategy", "canary", "steps", 1, "traffic"), 50),
     ("spec", "strategy", "canary", "steps", 1, "traffic"), "type"),
    ("ro-weight-is-v1alpha1", "rollout", RO, _set(("spec", "strategy", "canary", "steps", 1, "weight"), 50),
     ("spec", "strategy", "canary", "steps", 1), "additionalProperties"),
    ("ro-bad-replicas", "rollout", RO, _set(("spec", "strategy", "canary", "steps", 1, "replicas"), "half"),
     ("spec", "strategy", "canary", "steps", 1, "replicas"), "oneOf"),
    ("ro-pause-duration-string", "rollout", RO, _set(("spec", "strategy", "canary", "steps", 0, "pause"), {"duration": "1h"}),
     ("spec", "strategy", "canary", "steps", 0, "pause", "duration"), "type"),
    ("ro-header-match-type-prefix", "rollout", RO,
     _set(("spec", "strategy", "canary", "steps", 0, "matches", 0, "headers", 0, "type"), "Prefix"),
     ("spec", "strategy", "canary", "steps", 0, "matches", 0, "headers", 0, "type"), "enum"),
    ("ro-17-matches", "rollout", RO,
     _set(("spec", "strategy", "canary", "steps", 0, "matches"), [{"headers": [HEADER_MATCH]}] * 17),
     ("spec", "strategy", "canary", "steps", 0, "matches"), "maxItems"),
    ("ro-51-steps", "rollout", RO, _set(("spec", "strategy", "canary", "steps"), [{"replicas": 1}] * 51),
     ("spec", "strategy", "canary", "steps"), "maxItems"),
    ("ro-unknown-canary-field", "rollout", RO, _set(("spec", "strategy", "canary", "trafficRouting"), []),
     ("spec", "strategy", "canary"), "additionalProperties"),
    ("ro-unknown-strategy-field", "rollout", RO, _set(("spec", "strategy", "trafficRoutingRef"), "mse-traffic"),
     ("spec", "strategy"), "additionalProperties"),
    ("ro-unknown-spec-field", "rollout", RO, _set(("spec", "objectRef"), {}), ("spec",), "additionalProperties"),
    ("ro-unknown-patch-metadata-field", "rollout", RO,
     _set(("spec", "strategy", "canary", "patchPodTemplateMetadata", "finalizers"), []),
     ("spec", "strategy", "canary", "patchPodTemplateMetadata"), "additionalProperties"),
    ("ro-canary-and-blue-green", "rollout", RO, _set(("spec", "strategy", "blueGreen"), {}), ("spec", "strategy"), "oneOf"),
    ("ro-no-canary-no-blue-green", "rollout", RO, _del(("spec", "strategy", "canary")), ("spec", "strategy"), "oneOf"),
    ("ro-missing-workload-ref", "rollout", RO, _del(("spec", "workloadRef")), ("spec",), "required"),
    ("ro-workload-ref-missing-kind", "rollout", RO, _del(("spec", "workloadRef", "kind")), ("spec", "workloadRef"), "required"),
    ("ro-traffic-routing-missing-service", "rollout", RO,
     _del(("spec", "strategy", "canary", "trafficRoutings", 0, "service")),
     ("spec", "strategy", "canary", "trafficRoutings", 0), "required"),
    ("ro-blue-green-bad-step", "rollout", ROLLOUTS_V1BETA1[3],
     _set(("spec", "strategy", "blueGreen", "steps", 0, "traffic"), "all"),
     ("spec", "strategy", "blueGreen", "steps", 0, "traffic"), "pattern"),
    ("ro-bad-api-version", "rollout", RO, _set(("apiVersion",), "rollouts.kruise.io/v1alpha1"), ("apiVersion",), "const"),
    # ---- Rollout v1alpha1
    ("ro1-weight-101", "rollout-v1alpha1", RO_A1, _set(("spec", "strategy", "canary", "steps", 1, "weight"), 101),
     ("spec", "strategy", "canary", "steps", 1, "weight"), "maximum"),
    ("ro1-traffic-is-v1beta1", "rollout-v1alpha1", RO_A1, _set(("spec", "strategy", "canary", "steps", 1, "traffic"), "50%"),
     ("spec", "strategy", "canary", "steps", 1), "additionalProperties"),
    ("ro1-path-match-not-in-v1alpha1", "rollout-v1alpha1", RO_A1,
     _set(("spec", "strategy", "canary", "steps", 0, "matches", 0, "path"), {"value": "/api"}),
     ("spec", "strategy", "canary", "steps", 0, "matches", 0), "additionalProperties"),
    ("ro1-workload-ref-at-spec", "rollout-v1alpha1", RO_A1, _set(("spec", "workloadRef"), {}), ("spec",), "additionalProperties"),
    ("ro1-missing-object-ref", "rollout-v1alpha1", RO_A1, _del(("spec", "objectRef")), ("spec",), "required"),
]


@pytest.mark.parametrize(("case", "name", "base", "change", "path", "keyword"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_documents_fail_at_path(case, name, base, change, path, keyword):
    broken = mutate(base, change)
    assert_invalid(name, broken, path, keyword)


def test_invalid_cases_start_from_valid_documents():
    for _case, name, base, *_ in INVALID:
        assert_valid(name, base)


def test_unknown_field_error_names_the_field():
    broken = mutate(VS, _set(HTTP0 + ("retry",), {"attempts": 1}))
    messages = [e.message for e in validator_for("virtualservice").iter_errors(broken)]
    assert any("'retry'" in m for m in messages), messages


def test_exclusive_fields_error_carries_a_description():
    broken = mutate(VS, _set(HTTP0 + ("redirect",), {"uri": "/x"}))
    described = [e.schema.get("description") for e in validator_for("virtualservice").iter_errors(broken)
                 if e.validator == "not"]
    assert "route and redirect cannot be set together" in described


def test_envoyfilter_patch_value_is_free_form():
    document = mutate(EF, _set(("spec", "configPatches", 0, "patch", "value"),
                               {"anything": {"goes": [1, "two", {"three": None}]}, "@type": "x"}))
    assert_valid("envoyfilter", document)


def test_envoyfilter_remove_needs_no_value():
    document = mutate(EF, _set(("spec", "configPatches", 0, "patch"), {"operation": "REMOVE"}))
    assert_valid("envoyfilter", document)


def test_metadata_allows_server_fields():
    document = mutate(VS, _set(("metadata",), {
        "name": "vs-mocka", "namespace": "gray-demo", "uid": "5f1c7e8a-0000-4000-8000-000000000000",
        "resourceVersion": "12345", "generation": 7, "creationTimestamp": "2024-01-01T00:00:00Z",
        "finalizers": ["rollouts.kruise.io/trafficrouting"], "managedFields": [{"manager": "kubectl"}],
    }))
    assert_valid("virtualservice", document)


@pytest.mark.parametrize("duration", ["10s", "1.5s", "250ms", "1h30m", "2m0.5s", "100us", "1µs", ".5s", "24h"])
def test_durations_accepted(duration):
    assert_valid("virtualservice", mutate(VS, _set(HTTP0 + ("timeout",), duration)))


@pytest.mark.parametrize("duration", ["10", "10 s", "s", "1d", "-1s", "1.2.3s", "", "PT10S", "0s", "0.000s", "0ms"])
def test_durations_rejected(duration):
    keys = error_keys("virtualservice", mutate(VS, _set(HTTP0 + ("timeout",), duration)))
    assert {path for path, _ in keys} == {HTTP0 + ("timeout",)}, keys


@pytest.mark.parametrize("value", ["0%", "5%", "50%", "99%", "100%"])
def test_rollout_traffic_percentages(value):
    assert_valid("rollout", mutate(RO, _set(("spec", "strategy", "canary", "steps", 1, "traffic"), value)))


@pytest.mark.parametrize("value", ["5", "05%", "100.0%", "101%", "-1%", "5 %", "%"])
def test_rollout_traffic_rejected(value):
    assert_invalid("rollout", mutate(RO, _set(("spec", "strategy", "canary", "steps", 1, "traffic"), value)),
                   ("spec", "strategy", "canary", "steps", 1, "traffic"), "pattern")


# --------------------------------------------------------------------------- module API


def test_schema_names_match_files():
    from importlib import resources

    files = {p.name for p in resources.files("engine.checks.schemas").iterdir() if p.name.endswith(".json")}
    assert files == {f"{name}.json" for name in SCHEMA_NAMES}


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft_2020_12(name):
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_def_is_used_and_every_ref_resolves(name):
    schema = load_schema(name)
    text = json.dumps(schema)
    for ref in set(_refs(schema)):
        assert ref.startswith("#/$defs/"), ref
        assert ref.removeprefix("#/$defs/") in schema["$defs"], ref
    for def_name in schema["$defs"]:
        assert f'"#/$defs/{def_name}"' in text, f"unused definition {def_name}"


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


# Objects that deliberately accept unknown keys (see the schema descriptions).
LOOSE_OBJECTS = {
    ("*", "/$defs/objectMeta"),  # Kubernetes metadata: uid, resourceVersion, ... are allowed
    ("trafficrouting", "/properties/status"),
    ("rollout", "/properties/status"),
    ("rollout-v1alpha1", "/properties/status"),
    ("rollout", "/$defs/blueGreenStrategy"),
}


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_unknown_fields_rejected_everywhere_else(name):
    """Every object schema with declared properties closes itself, except the listed loose ones."""
    open_objects = []
    # Subschemas under these keywords only add constraints to an object described elsewhere.
    constraint_only = {"if", "then", "else", "not"}

    def walk(node, pointer):
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                if ("*", pointer) not in LOOSE_OBJECTS and (name, pointer) not in LOOSE_OBJECTS:
                    open_objects.append(pointer)
            for key, value in node.items():
                if key in constraint_only:
                    continue
                walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{pointer}/{i}")

    walk(load_schema(name), "")
    assert not open_objects


def test_load_schema_returns_independent_copies():
    first = load_schema("virtualservice")
    first["title"] = "changed"
    first["$defs"].clear()
    second = load_schema("virtualservice")
    assert second["title"] == "Istio VirtualService"
    assert "httpRoute" in second["$defs"]


def test_load_schema_unknown_name():
    with pytest.raises(KeyError):
        load_schema("ingress")


def test_load_schema_does_not_depend_on_cwd(tmp_path, monkeypatch):
    schemas._load.cache_clear()
    monkeypatch.chdir(tmp_path)
    assert os.getcwd() == str(tmp_path)
    for name in SCHEMA_NAMES:
        assert load_schema(name)["$id"] == f"urn:graylane:schema:{name}"


def test_validator_is_built_once():
    assert validator_for("rollout") is validator_for("rollout")
    assert isinstance(validator_for("rollout"), Draft202012Validator)


@pytest.mark.parametrize(
    ("api_version", "kind", "expected"),
    [
        ("networking.istio.io/v1alpha3", "VirtualService", "virtualservice"),
        ("networking.istio.io/v1beta1", "VirtualService", "virtualservice"),
        ("networking.istio.io/v1", "VirtualService", "virtualservice"),
        ("networking.istio.io/v1", "DestinationRule", "destinationrule"),
        ("networking.istio.io/v1beta1", "Gateway", "gateway"),
        ("networking.istio.io/v1alpha3", "EnvoyFilter", "envoyfilter"),
        ("networking.istio.io/v1beta1", "EnvoyFilter", "envoyfilter"),  # group match; schema rejects the version
        ("networking.istio.io/v2", "VirtualService", "virtualservice"),
        ("rollouts.kruise.io/v1alpha1", "TrafficRouting", "trafficrouting"),
        ("rollouts.kruise.io/v1beta1", "Rollout", "rollout"),
        ("rollouts.kruise.io/v1alpha1", "Rollout", "rollout-v1alpha1"),
        ("networking.istio.io/v1", "ServiceEntry", None),
        ("gateway.networking.k8s.io/v1", "Gateway", None),
        ("apps/v1", "Deployment", None),
        ("v1", "Service", None),
        ("", "VirtualService", None),
        (None, "VirtualService", None),
    ],
)
def test_schema_for(api_version, kind, expected):
    assert schema_for(api_version, kind) == expected


def test_schema_for_rejected_version_reports_api_version():
    broken = mutate(EF, _set(("apiVersion",), "networking.istio.io/v1beta1"))
    name = schema_for(broken["apiVersion"], broken["kind"])
    assert name == "envoyfilter"
    assert_invalid(name, broken, ("apiVersion",), "const")
