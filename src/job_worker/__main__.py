"""``python -m job_worker``: the ``job-worker`` command."""

from .cli import main

if __name__ == "__main__":
    main()
