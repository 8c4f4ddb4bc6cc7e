"""Development tools that are not shipped in the wheel: the one-machine cluster of
`make cluster-demo`, used by tests and benchmarks too."""
