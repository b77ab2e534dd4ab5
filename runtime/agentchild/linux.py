"""The prctl(2) options the platform's processes set (Linux's numbers; the stdlib has no names for them).

Here, in the one package every process may import: the worker and runplatform (runtime.agentchild.linux), the
zygote and the sandbox launcher (agentchild.linux, with runtime/ on their path), a task's child (.linux)."""
PR_SET_PDEATHSIG = 1  # a signal when the parent dies
PR_SET_DUMPABLE = 4  # 0: no /proc/PID/mem, ptrace or pidfd_getfd by others of the same uid
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36  # orphaned descendants are re-parented to this process
PR_SET_NO_NEW_PRIVS = 38
