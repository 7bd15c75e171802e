"""The exception hierarchy: one base class, one subclass per stage.

Problems with a single rule are not exceptions: they become `Problem` values (see model.py)
so that one bad rule never stops the others. Exceptions are for what stops a whole run.
"""

from __future__ import annotations


class DeployerError(Exception):
    """Base of every error this tool raises on purpose; the CLI catches it in one place."""


class UsageError(DeployerError):
    """A command-line argument names something that does not exist (a path, an environment)."""


class ConfigError(DeployerError):
    """The config file is unreadable or invalid."""


class RuleConversionError(DeployerError):
    """One rule could not become KQL; the build turns it into that rule's problem."""


class TemplateError(DeployerError):
    """A jinja2 template is missing, does not compile, or renders something that is not JSON."""


class KqlServiceError(DeployerError):
    """The Kusto.Language service could not be started or stopped answering."""


class KqlUnavailableError(KqlServiceError):
    """Node.js or the Kusto.Language package is not installed."""
