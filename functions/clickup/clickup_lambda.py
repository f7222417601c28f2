"""The ClickUp collector's Lambda entry point (template.yaml: Handler clickup_lambda.handler)."""

from clickup_collector import ClickUp

from auditlake.lambda_handler import make_handler

handler = make_handler(ClickUp)
