"""The Make collector's Lambda entry point (template.yaml: Handler make_lambda.handler)."""

from make_collector import Make

from auditlake.lambda_handler import make_handler

handler = make_handler(Make)
