"""Worker extensions: what a method adds to a job on the shared worker, registered per job namespace.

``base`` holds the interface (``WorkerExtension``, ``JobContext``) and the registry; one module per method
that needs one: ``senas`` (expanded weights, Eq. 4's snapshots), ``nse`` (the fitness-indicator update),
``autospace`` (a generation's fitness-weighted layers, Eq. 6's MAdds term), ``proxyless`` (ProxylessNAS's
binary gates and architecture steps).
"""

from tune_spacenas.jobs import AUTOSPACE_KEY, NSE_KEY, PROXYLESS_KEY, SENAS_KEY
from tune_spacenas.trainables.extensions.autospace import AutoSpaceExtension
from tune_spacenas.trainables.extensions.base import (
    ExtensionStore,
    JobContext,
    WorkerExtension,
    extensions_for,
    register_extension,
)
from tune_spacenas.trainables.extensions.nse import NSEExtension
from tune_spacenas.trainables.extensions.proxyless import ProxylessExtension
from tune_spacenas.trainables.extensions.senas import SENASExtension

register_extension(SENAS_KEY, SENASExtension)
register_extension(NSE_KEY, NSEExtension)
register_extension(AUTOSPACE_KEY, AutoSpaceExtension)
register_extension(PROXYLESS_KEY, ProxylessExtension)

__all__ = [
    "AutoSpaceExtension",
    "ExtensionStore",
    "JobContext",
    "NSEExtension",
    "ProxylessExtension",
    "SENASExtension",
    "WorkerExtension",
    "extensions_for",
    "register_extension",
]
