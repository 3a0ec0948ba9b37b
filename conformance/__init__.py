"""Conformance: checks an implementation of Lion, Tiger or SIGNUM against :mod:`lionspec.spec`.

:mod:`lionspec.conformance.vectors` holds portable golden vectors produced by the exact oracle.
"""
