"""Alerts: rules, evaluation, lifecycle, dispatch.

- ``alerts.rules``: the YAML rule format, ``RulePack.load(files)``; built-in pack in ``pack/``.
- ``alerts.engine``: ``RuleEngine`` evaluates a pack on ``Readings`` batches and events
  (event time), and absence rules on ``tick``.
- ``alerts.state``: ``AlertState``, alerts with history, acknowledgements, manual resolves,
  assignments, comments, silences, maintenance windows and the engine's stream state in the
  state DB; ``alerts.maintenance``: when a recurring maintenance window is active.
- ``alerts.notice``: what the lifecycle hands to dispatch; ``alerts.dispatch``: webhooks.
- ``alerts.api`` (REST router), ``alerts.cli`` (``citywatch rules``).

Submodules are imported explicitly (``from alerts.engine import RuleEngine``) so that importing
one part does not pull in the others.
"""
