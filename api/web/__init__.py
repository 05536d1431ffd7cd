"""The dashboards and landing pages: server-rendered (Jinja2 + htmx) over the API's services."""
