"""Alerts: rules, evaluation, lifecycle, dispatch.

- ``alerts.rules``: the YAML rule format, ``RulePack.load(files)``; built-in pack in ``pack/``.
- ``alerts.rule_types``: one module per rule type (metric, event, absence), registered by name.
- ``alerts.engine``: ``RuleEngine`` evaluates a pack on ``Readings`` batches and events
  (event time), and absence rules on ``tick``.
- ``alerts.model``: the value types (``Alert``, ``HistoryEntry``, ``Silence``, the engine's
  ``Transition``); ``alerts.lifecycle``: the one transition function of alerts.
- ``alerts.store``: the alert store (``AlertStore``; ``AlertState`` in the state DB, SQLite or
  PostgreSQL; ``AlertState(url_or_connection)``): alerts with
  history, pending alerts, acknowledgements, manual resolves, assignments, comments, silences,
  maintenance windows; ``alerts.checkpoints``: the engine's stream state (``CheckpointStore``,
  ``Checkpoints``);
  ``alerts.statedb``: the state DB connection and transaction both share;
  ``alerts.maintenance``: when a recurring maintenance window is active.
- ``alerts.notice``: what the lifecycle hands to dispatch; ``alerts.dispatch``: webhooks.
- ``alerts.api`` (REST router), ``alerts.cli`` (``citywatch rules``).

Submodules are imported explicitly (``from alerts.engine import RuleEngine``) so that importing
one part does not pull in the others.
"""
