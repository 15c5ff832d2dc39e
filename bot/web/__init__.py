"""The ASGI app and its routes: the webhooks and /healthz (`app.create_app`)."""
