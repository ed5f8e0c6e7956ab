"""The sandbox: a local stand-in for Microsoft Entra ID and Business Central.

It serves HTTPS on 127.0.0.1 with its own CA, so the hub's production client code
(msal + httpx) runs against it unchanged. Entry points:

- ``hub_sandbox.app.create_app(settings)``: the FastAPI application.
- ``hub_sandbox.server.run(settings)``: serve it over HTTPS, blocking.
- ``hub_sandbox.server.serve_in_background(settings)``: the same in a thread, for tests.
"""
