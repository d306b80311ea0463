"""Validation: JSON Schemas per kind and semantic analyzers with stable finding codes.

Public: ``validate.validate_documents`` (``graylane validate``), ``validate.check_rendered`` (the output check
render, apply and the controller run on what scripts produce), ``validate.check_generated`` (the check color,
chain and new run on the objects they make), ``analyzers.analyze``, ``schemas.schema_for``.
"""
