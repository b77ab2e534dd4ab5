"""Code that runs INSIDE a task's sandbox. Self-contained: stdlib, AutoGen and relative imports only.

Never import Django, `runtime.*` or any platform module from here: the sandbox's mount view
contains this directory (and the venv) but not the rest of the platform.
"""
