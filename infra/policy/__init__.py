"""Policy pack for the region stacks (run with ``pulumi preview --policy-pack infra/policy``)."""
