"""The dashboard ``edgekit cloud serve`` shows at ``/dashboard``: server-rendered pages
(Jinja2) over the store, vendored uPlot for charts and htmx for refresh, no JS build step.

``mount.mount_dashboard(app)`` adds its routers, static files, handlers and the ``/`` redirect.
Queries live in ``queries``; how values read (times, numbers, documents as tables) in
``format``; who may look in ``auth``.
"""
