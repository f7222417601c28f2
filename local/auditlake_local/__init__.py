"""The local world of auditlake: vendor simulators, in-process AWS built from template.yaml, the demo."""
