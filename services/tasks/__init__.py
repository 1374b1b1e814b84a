"""The tasks this deployment runs. API and worker both import ``catalog`` from here.

Add a task by writing a function in a module of this package and decorating it with
``@catalog.task()``; import the module below so that it registers.
"""

from services.core.catalog import Catalog

catalog = Catalog()

from services.tasks import demo  # noqa: E402  (registers the built-in tasks on the catalog)

__all__ = ["catalog", "demo"]
