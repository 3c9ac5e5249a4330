# Fixtures for the editor end-to-end tests; the helpers live in e2e_helpers.py.
from e2e_helpers import code_server_bin, node_modules, vsix  # noqa: F401
