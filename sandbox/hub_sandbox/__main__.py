"""``python -m hub_sandbox``: serve the sandbox with settings from HUB_* variables."""

from hub_sandbox.server import main

main()
