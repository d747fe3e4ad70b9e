"""Code that runs on Ray: training and validation entrypoints, industry templates and their data.

Shipped to Ray workers: imports ``testbed`` (core models) but never ``operators`` or ``infra``.
"""
