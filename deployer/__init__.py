"""sentinel-deployer: Sigma rules in, Microsoft Sentinel analytics rules out.

The package is laid out by pipeline stage; `head -3 deployer/*.py` gives the map.
"""

__version__ = "0.1.0"
