"""The coloring defaults, in a module of their own so ``graylane --help`` can show them without importing the
Lua generator and its regex compiler (start-up time)."""

DEFAULT_SELECTOR = {"istio": "ingressgateway"}
DEFAULT_NAMESPACE = "istio-system"
DEFAULT_LANE_VALUE = "canary"
DEFAULT_BASE_VALUE = "base"
DEFAULT_SALT = "graylane"
