"""taskflow: FastAPI BackgroundTasks with a durable record, retries, recovery and an admin.

Vendored into this service: the team owns this folder. See CHANGELOG.md beside this file.
"""

from .admin import TaskAdmin
from .background import EnqueueOptions, ManagedBackgroundTasks
from .config import TaskflowConfig
from .context import TaskContext, current_task
from .hooks import TaskOutcome
from .manager import CancelOutcome, TaskManager, TaskNotFound, TaskNotRetryable
from .models import TaskStatus
from .policy import RetryAfter, RetryPolicy, TaskCancelled, TaskTimeout
from .process_executor import TaskProcessError
from .registry import TaskSpec
from .results import TaskFailed, TaskResultInvalid, TaskResultTimeout
from .schedules import ScheduleNotFound

__version__ = "0.4.0"

__all__ = [
    "CancelOutcome",
    "EnqueueOptions",
    "ManagedBackgroundTasks",
    "RetryAfter",
    "RetryPolicy",
    "ScheduleNotFound",
    "TaskAdmin",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskManager",
    "TaskNotFound",
    "TaskNotRetryable",
    "TaskOutcome",
    "TaskProcessError",
    "TaskResultInvalid",
    "TaskResultTimeout",
    "TaskSpec",
    "TaskStatus",
    "TaskTimeout",
    "TaskflowConfig",
    "__version__",
    "current_task",
]
