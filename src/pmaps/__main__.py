"""python -m pmaps"""
from .cli import entry

entry()
