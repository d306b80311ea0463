"""Argo Rollouts (``argoproj.io/v1alpha1`` Rollout, ``canary.trafficRouting.istio``): reading the Rollout, its step
semantics, and rendering the VirtualServices and DestinationRule step by step as Argo's controller leaves them."""
