"""Tune searchers: the shared base, the papers' baselines and the four space-adaptive methods."""

from tune_spacenas.searchers.ase import ASESearcher
from tune_spacenas.searchers.autospace import AutoSpaceSearcher
from tune_spacenas.searchers.base import FINISHED, ArchSearcher, SearchProgress
from tune_spacenas.searchers.evolution import EvolutionSettings
from tune_spacenas.searchers.nse import NSESearcher
from tune_spacenas.searchers.proxyless import ProxylessSearcher
from tune_spacenas.searchers.random import RandomSearcher
from tune_spacenas.searchers.regevo import RegularizedEvolutionSearcher
from tune_spacenas.searchers.reinforce import REINFORCESearcher
from tune_spacenas.searchers.senas import SENASSearcher
from tune_spacenas.searchers.spos import SPOSSearcher

__all__ = [
    "FINISHED",
    "ArchSearcher",
    "ASESearcher",
    "AutoSpaceSearcher",
    "EvolutionSettings",
    "NSESearcher",
    "ProxylessSearcher",
    "RandomSearcher",
    "REINFORCESearcher",
    "RegularizedEvolutionSearcher",
    "SearchProgress",
    "SENASSearcher",
    "SPOSSearcher",
]
