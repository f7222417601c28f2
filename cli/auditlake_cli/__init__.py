"""`auditlake`, the operator's command line: status, backfill, reconcile, query, secret, verify and doctor against a
deployed stack. It needs boto3, requests (to check a token with its vendor) and cryptography (to check the digests'
signatures offline), and reads everything else from the deployed stack: its outputs, its Athena saved queries, its
resources. The local world (simulators, the demo workspace) adds itself as a plugin when installed (`plugins.py`).
"""
