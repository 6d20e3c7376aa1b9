"""The compliance suite: static checks of a gateway's audit facts, as ordinary pytest tests.

Run it against a live gateway with pytest and testinfra's own options:

    pytest --pyargs lab.compliance --hosts=paramiko://root@gw -k smtp --junitxml=out.xml

The plugin (`lab.compliance.plugin`, registered by entry point) only adds
`--port25lab-*` options and `port25lab_*` fixtures; it collects nothing
unless this package is asked for.
"""
