"""The local workspace emulator: an HTTPS server on 127.0.0.1 that speaks Azure Resource Manager's
protocol for Microsoft Sentinel alert rules, as the embedded default target and the test bed.

It uses only the standard library, trustme and `deployer.alertrule` (our model of the API).
"""

from deployer.emulator.emulator import Emulator, LoggedRequest, serve
from deployer.emulator.faults import Faults

__all__ = ["Emulator", "Faults", "LoggedRequest", "serve"]
