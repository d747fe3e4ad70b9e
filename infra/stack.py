"""Read the stack's ``testbed:`` config through the shared typed models."""

from __future__ import annotations

import pulumi

from testbed.config import CONFIG_NAMESPACE, STACK_KEYS, ConfigError, StackConfig, stack_config_from_mapping


def stack_file_name() -> str:
    return f"Pulumi.{pulumi.get_stack()}.yaml"


def raw_config() -> dict[str, object]:
    """The ``testbed:<key>`` values of this stack, parsed from JSON, as a ``config:`` mapping."""
    config = pulumi.Config(CONFIG_NAMESPACE)
    values: dict[str, object] = {}
    for key in STACK_KEYS:
        try:
            value = config.get_object(key)
        except pulumi.ConfigTypeError as exc:  # not JSON at all
            raise ConfigError(stack_file_name(), [(f"config.{CONFIG_NAMESPACE}:{key}", str(exc))]) from None
        if value is not None:
            values[f"{CONFIG_NAMESPACE}:{key}"] = value
    return values


def load() -> StackConfig:
    """Validate this stack's config; a wrong value stops the program naming key path and reason."""
    try:
        return stack_config_from_mapping(raw_config(), stack_file_name())
    except ConfigError as exc:
        raise pulumi.RunError(f"invalid stack configuration:\n{exc}") from None


def secret(key: str) -> pulumi.Output[str]:
    """A secret config value; ``key`` is 'name' (project namespace) or 'namespace:name'."""
    namespace, _, name = key.rpartition(":")
    config = pulumi.Config(namespace or None)
    value = config.get_secret(name)
    if value is None:
        full = key if namespace else f"{pulumi.get_project()}:{key}"
        raise pulumi.RunError(
            f"{stack_file_name()}: config.{full}: is required but missing; "
            f"set it with: pulumi config set --secret {key} <value>"
        )
    return value
