"""The command line, `python -m flows`: commands, pre-flight checks, Ctrl-C, the local Prefect
server and the progress display. It starts flows; it is not one (flows/ only wires).
"""
