"""The live CPU step: run one tiny training step of the user's script and confirm each finding.

`worker.py` runs under the user's interpreter and imports only the stdlib and torch; `service.py`
manages it from the server side; `verdicts.py` turns observations into verdicts; `cli.py` is
`gradpath confirm`.
"""
