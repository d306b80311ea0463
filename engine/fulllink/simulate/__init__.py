"""The request simulator: where a request goes, hop by hop, through gateway, VirtualServices and pods.

``simulator.simulate`` drives it; ``inputs`` reads the mesh from manifests, ``mesh`` holds Istio's routing rules,
``trace`` records each hop, ``report`` prints it.
"""
