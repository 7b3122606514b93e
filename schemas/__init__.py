"""Event contracts: one pydantic module per service, the catalog, and their generated files.

identity, invitations, notifications, access (the ``<service>.access`` events)
hold the event classes; roles the role names; values the shared field types;
catalog lists everything and builds the registry; ``python -m schemas.generate``
writes json/<ce_type>.json and asyncapi.yaml, and ``--check`` is CI's drift check.
"""
