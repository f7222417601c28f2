"""The Asana collector's Lambda entry point (template.yaml: Handler asana_lambda.handler)."""

from asana_collector import Asana

from auditlake.lambda_handler import make_handler

handler = make_handler(Asana)
