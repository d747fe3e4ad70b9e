"""The local mode's trust boundary in one sentence: what ``testbed up`` prints first, ``testbed status`` shows and
the README's first screen says (docs/operators/isolation.md has the three lists it comes from)."""

LOCAL_MODE_LINE = (
    "local mode: one trust domain - jobs run as one OS user on one shared Ray whose token every job "
    "holds, so a job can see other jobs' processes, files and runtime environments; isolation between "
    "companies here is by the API only (several companies on one server: k3s with provider: existing, "
    "docs/operators/isolation.md)"
)
