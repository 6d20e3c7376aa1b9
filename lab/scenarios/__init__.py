"""The scenarios as a pytest suite: one test item per scenario (`pytest --pyargs lab.scenarios`).

An existing engine runs them side by side and on other machines: pytest-xdist
(`-n 2` here, `--tx ssh=root@HOST//python=…` elsewhere), each worker a process
of its own, each scenario a lab of its own.
"""
