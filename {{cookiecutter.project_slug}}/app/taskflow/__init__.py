"""taskflow: FastAPI BackgroundTasks with a durable record, retries, recovery and an admin.

Vendored into this service: the team owns this folder. See CHANGELOG.md beside this file.
"""

__version__ = "0.1.0"
