"""python -m pmaps"""
from ._entry import entry

entry()
