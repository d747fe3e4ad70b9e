"""Size and range limits of the control plane's API, shared by the server, the SDK and the docs.

A request body over ``MAX_BODY_BYTES`` is refused with 413 (an upload: over ``MAX_PACKAGE_BYTES`` or
``MAX_DATA_FILE_BYTES``, the control plane's settings may lower them); a field beyond its limit with 422.
Lists are paged: ``DEFAULT_PAGE_SIZE`` items unless ``limit`` asks for up to ``MAX_PAGE_SIZE``.
"""

from __future__ import annotations

MAX_BODY_BYTES = 64 * 1024  # a job spec; code travels as a package, never in the body
MAX_PACKAGE_BYTES = 100 * 2**20  # a code package: its files and its zip (Ray's own default is of this order)
MAX_DATA_FILE_BYTES = 5 * 2**30  # one data file uploaded through the control plane
MAX_FOLDER_FILES = 100_000  # files in one data folder the client uploads (`testbed data upload DIR`)
MAX_ENTRYPOINT_CHARS = 8 * 1024
MAX_ENV_VARS = 64
MAX_ENV_NAME_CHARS = 128
MAX_ENV_VALUE_CHARS = 4 * 1024
MAX_PARAMS = 32
MAX_PARAM_NAME_CHARS = 64
MAX_PARAM_VALUE_CHARS = 1024
MAX_TEMPLATE_CHARS = 64
MAX_ID_CHARS = 64  # job ids, tenant ids and cursors in paths and queries

MIN_CPUS = 0.01  # Ray schedules fractions of a CPU; less than this cannot do work
MAX_CPUS = 1024.0
MAX_GPUS = 64
MAX_RUNTIME_SECONDS = 366 * 86400  # a job's max run time: at most a fiscal year
DEFAULT_COMMAND_MAX_RUNTIME_SECONDS = 3600  # a command job that names none
MAX_MEMORY_BYTES = 2**50  # 1 PiB: more than any node has, and every quantity the API pattern allows

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
DEFAULT_MAX_QUEUED_JOBS = 100  # per tenant: jobs admitted but not yet handed to the backend
