"""What a strategy does to network objects: Kruise TrafficRoutings and Rollouts (Argo Rollouts goes here too).

Public: ``render.render``/``render.restore`` (run the scripts, give objects back), ``script_input.build_script_input``
(the one builder of the scripts' ``obj``), ``strategy.plan`` (read a strategy), ``plan.plan_steps``/``kubectl_diff``,
``harness.run_tree`` (``graylane test``), ``authoring`` (``graylane new``), ``hosts`` (service name rules).
"""
